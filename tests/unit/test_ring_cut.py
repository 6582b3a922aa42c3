"""A peritumoral ring cut by the image edge is reported as such, with the ring volume measured
and the volume cut off, and the outputs say so (issue 15, section 2).

Expected volumes come from the ring's definition computed the plain way (an exact distance
transform, tests/support/ring_reference.py) on the whole CT's lesion mask, once on the image's
grid (what is measured) and once on that grid extended by empty planes on every side (the ring
voxels beyond the original grid are the cut)."""

from __future__ import annotations

import numpy as np
import pytest
from fhir.resources.R4B.bundle import Bundle

from service.imaging.crops import lesion_crop
from service.location import LocationRules
from service.model import CtSeries, LesionMask, LesionResult, RingCut
from service.outputs import codes
from service.outputs.feature_codes import REGION_METHODS
from service.outputs.fhir import build_bundle
from service.outputs.sr import build_measurement_report
from service.scoring import lesion as lesion_module
from service.scoring.client import GrpcScorer
from service.scoring.lesion import ScoringContext, score_lesion
from service.scoring.panel import signature_panel
from service.scoring.server import build_server
from service.scoring.settings import ExtractionSettings
from service.scoring.signatures import load_signature
from tests.support.crops import whole_mask
from tests.support.ring_reference import reference_ring
from tests.support.synthetic_lesion import synthetic_lesion_ct
from tests.support.synthetic_results import make_study_result

WIDTH_MM = 2.0
NATIVE = ExtractionSettings(resampledPixelSpacing=None)  # features on the CT's own grid
# The synthetic sphere (radius 9 mm) moved so that it reaches the last slice, the first slice, the
# field of view's first column; and left in the middle, 7 slices from either end.
LAST_SLICE, FIRST_SLICE, FOV_EDGE, MIDDLE = (0, 0, 18), (0, 0, -17), (-35, 0, 0), (0, 0, 0)


def _context(settings: ExtractionSettings) -> ScoringContext:
    signature = load_signature()
    return ScoringContext(settings, signature, LocationRules(), signature_panel(signature))


def _expected(ct: CtSeries, lesion: LesionMask) -> RingCut:
    """(ring inside the image, ring beyond its edge) in mL, from the definition on the whole grid."""
    spacing_zyx = (ct.geometry.spacing[2], ct.geometry.spacing[1], ct.geometry.spacing[0])
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    mask = whole_mask(lesion, ct)
    pad = 5  # more than 2 mm + half a voxel on the finest (0.77 mm) axis
    extended = reference_ring(np.pad(mask, pad), spacing_zyx, WIDTH_MM)
    beyond = np.count_nonzero(extended) - np.count_nonzero(extended[pad:-pad, pad:-pad, pad:-pad])
    measured = np.count_nonzero(reference_ring(mask, spacing_zyx, WIDTH_MM))
    return RingCut(measured_ml=measured * voxel_ml, cut_ml=beyond * voxel_ml)


def _scored(offset: tuple[float, float, float], settings: ExtractionSettings) -> LesionResult:
    ct, lesion = synthetic_lesion_ct(offset)
    return score_lesion(lesion_crop(ct, lesion, settings), _context(settings))


@pytest.mark.parametrize("offset", [LAST_SLICE, FIRST_SLICE, FOV_EDGE], ids=["last-slice", "first-slice", "fov"])
def test_a_lesion_at_the_image_edge_reports_the_ring_volume_cut_off(offset):
    ct, lesion = synthetic_lesion_ct(offset)
    expected = _expected(ct, lesion)
    assert expected.cut_ml > 0.1  # the geometry does cut the ring
    result = _scored(offset, NATIVE)
    assert result.ring_cut is not None
    assert result.ring_cut.cut_ml == pytest.approx(expected.cut_ml, rel=1e-9)
    assert result.ring_cut.measured_ml == pytest.approx(expected.measured_ml, rel=1e-9)
    assert result.features["ring"] and result.score is not None  # still computed, on what exists


def test_the_ring_of_a_lesion_at_the_edge_is_built_once(monkeypatch):
    """The ring features are computed on and the ring cut measures the same ring: the scorer
    builds it once per lesion (a spy on the real ring builder counts the calls). The cut's
    extended ring (service.scoring.ring.ring_beyond_edges) lies on another, padded grid and is
    not this ring."""
    grids = []
    real_ring_mask = lesion_module.ring_mask

    def counting_ring_mask(core, spacing_zyx, width_mm):
        grids.append(core.shape)
        return real_ring_mask(core, spacing_zyx, width_mm)

    monkeypatch.setattr(lesion_module, "ring_mask", counting_ring_mask)
    ct, lesion = synthetic_lesion_ct(LAST_SLICE)
    expected = _expected(ct, lesion)
    result = _scored(LAST_SLICE, NATIVE)
    assert len(grids) == 1
    assert result.ring_cut is not None and result.features["ring"]
    assert result.ring_cut.measured_ml == pytest.approx(expected.measured_ml, rel=1e-9)


def test_a_lesion_far_from_the_edge_reports_no_cut():
    ct, lesion = synthetic_lesion_ct(MIDDLE)
    assert _expected(ct, lesion).cut_ml == 0
    assert _scored(MIDDLE, NATIVE).ring_cut is None
    assert _scored(MIDDLE, ExtractionSettings()).ring_cut is None


def test_on_the_resampled_grid_the_cut_is_reported_and_travels_over_grpc():
    """With the default 1 mm resampling the grid is the resampled image's (its edge lies within
    half a native slice of the CT's), so only the presence of the cut is checked against the
    geometry; the gRPC scorer gives the in-process scorer's numbers."""
    settings = ExtractionSettings()
    context = _context(settings)
    ct, lesion = synthetic_lesion_ct(LAST_SLICE)
    crop = lesion_crop(ct, lesion, settings)
    local = score_lesion(crop, context)
    assert local.ring_cut is not None
    assert 0 < local.ring_cut.cut_ml < local.ring_cut.measured_ml  # beyond one face: less than the rest
    server, port, _ = build_server(context, "127.0.0.1:0", workers=1)
    server.start()
    try:
        with GrpcScorer(f"127.0.0.1:{port}") as client:
            (remote,) = client.score_batch([crop])
    finally:
        server.stop(grace=None)
    assert remote.ring_cut == local.ring_cut


def _sr_texts(dataset) -> list[str]:
    texts = []
    for item in dataset.get("ContentSequence", []):
        if item.get("ValueType") == "TEXT":
            texts.append(str(item.TextValue))
        texts += _sr_texts(item)
    return texts


def test_the_sr_and_the_bundle_state_the_cut_ring_of_that_lesion_only():
    result, evidence = make_study_result(3)
    cut = RingCut(measured_ml=3.5, cut_ml=0.75)
    lesion = result.lesions[1]
    assert "ring" in lesion.features
    lesion.ring_cut = cut
    statement = f"Lesion {codes.lesion_label(lesion)}: {cut.statement()}"
    assert "0.750 mL" in statement and "3.500 mL" in statement

    sr_texts = _sr_texts(build_measurement_report(result, evidence))
    assert sr_texts.count(statement) == 1
    assert sum("Peritumoral ring cut" in text for text in sr_texts) == 1

    bundle = Bundle.model_validate_json(build_bundle(result, sr_sop_instance_uid="1.2.3.4").model_dump_json())
    resources = [entry.resource for entry in bundle.entry]
    (report,) = [r for r in resources if r.get_resource_type() == "DiagnosticReport"]
    assert statement in report.conclusion
    noted = [r for r in resources if r.get_resource_type() == "Observation"
             and any(note.text == cut.statement() for note in r.note or [])]
    (ring_features,) = noted
    assert ring_features.focus[0].identifier.value == f"urn:oid:{lesion.tracking_uid}"
    assert ring_features.method.coding[0].code == REGION_METHODS["ring"].value
