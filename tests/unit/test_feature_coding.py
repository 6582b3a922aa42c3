"""How diameters and kurtosis are coded: IBSI L0JK only for IBSI's mesh diameter, excess kurtosis
as IBSI's IPH6. Read back from a written SR with highdicom and from the FHIR Bundle."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import highdicom as hd
import pytest
from pydicom.sr.coding import Code

from service.outputs import codes
from service.outputs.fhir import build_bundle
from service.outputs.sr import build_measurement_report
from tests.support.sr_groups import lesion_groups
from tests.support.synthetic_results import make_study_result
from tests.support.written_outputs import write_sr

L0JK = Code("L0JK", "IBSI", "Maximum 3D Diameter of a Mesh")
EXCESS_KURTOSIS = Code("IPH6", "IBSI", "(Excess) intensity kurtosis")
MESH_DIAMETER, KURTOSIS = 41.5, -0.75


def _full_panel_result():
    """A scored study whose first lesion also carries the full panel's mesh diameter and kurtosis."""
    result, evidence = make_study_result(3, "RTSTRUCT")
    lesion = next(x for x in result.lesions if x.features)
    core = {**lesion.features["core"], "morph_diam": MESH_DIAMETER, "stat_kurt": KURTOSIS}
    full = dataclasses.replace(lesion, features={**lesion.features, "core": core})
    assert full.max_3d_diameter_mm != MESH_DIAMETER
    return dataclasses.replace(result, lesions=[full if x is lesion else x for x in result.lesions]), evidence, full


def test_one_sr_holds_l0jk_once_for_the_mesh_diameter_and_the_boundary_diameter_under_its_own_code(tmp_path: Path):
    result, evidence, lesion = _full_panel_result()
    path = write_sr(build_measurement_report(result, evidence), tmp_path)
    report = hd.sr.srread(path).content
    (group,) = lesion_groups(report, tracking_uid=lesion.tracking_uid)
    (mesh,) = group.get_measurements(name=L0JK)
    assert mesh.value == pytest.approx(MESH_DIAMETER)
    (boundary,) = group.get_measurements(name=codes.MAX_3D_DIAMETER)
    assert boundary.value == pytest.approx(lesion.max_3d_diameter_mm)
    assert codes.MAX_3D_DIAMETER.scheme_designator == codes.RCDS_SCHEME
    (kurtosis,) = group.get_measurements(name=EXCESS_KURTOSIS)
    assert kurtosis.value == pytest.approx(KURTOSIS)


def test_fhir_codes_the_boundary_diameter_privately_and_kurtosis_as_excess():
    result, _, _ = _full_panel_result()
    bundle = build_bundle(result, sr_sop_instance_uid="1.2.3.4.5")
    codings = [
        (coding.system, coding.code, quantity.value)
        for entry in bundle.entry if entry.resource.__resource_type__ == "Observation"
        for component in (entry.resource.component or [])
        for coding in component.code.coding
        for quantity in [component.valueQuantity] if quantity is not None
    ]
    ibsi = codes.IBSI_FHIR_SYSTEM
    assert [float(v) for s, c, v in codings if (s, c) == (ibsi, "L0JK")] == [pytest.approx(MESH_DIAMETER)]
    assert [float(v) for s, c, v in codings if (s, c) == (ibsi, "IPH6")] == [pytest.approx(KURTOSIS)]
    boundary = [float(v) for s, c, v in codings if (s, c) == (codes.RCDS_FHIR_SYSTEM, codes.MAX_3D_DIAMETER.value)]
    assert sorted(boundary) == pytest.approx(sorted(x.max_3d_diameter_mm for x in result.lesions))
