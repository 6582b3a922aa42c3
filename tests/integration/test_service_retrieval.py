"""The running service retrieves series from a real PACS (docs/architecture.md, "Priors from PACS"): the
prior CT a registration needs, and a stale follow-up that another ingest replica scored.

Orthanc (reference configuration, DICOMweb plugin) is the PACS. The moved follow-up is STS_019
moved by a known rigid transform into a new Frame of Reference, its ROI renamed so that only
geometry can match it (tests/support/moved_study.py); the scaled follow-up is STS_019 with its
contour scaled by S (tests/support/follow_up_study.py). Expected values come from the
transform and the polygons, never from the service.
"""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import highdicom as hd
import pydicom
import pytest

from service.outputs import codes
from service.priors import read_prior_report
from tests.support.follow_up_study import diameter_percent_bounds, write_follow_up, write_split
from tests.support.moved_study import contour_points, rigid_about_z, write_moved_follow_up
from tests.support.orthanc import Orthanc, find_orthanc
from tests.support.pacs_site import TIMEOUT_S, Site, running_site, site_settings
from tests.support.processes import LOOPBACK, free_port, wait_until
from tests.support.service import CLI, REPO, RunningService, Scorer
from tests.support.studies import copy_study
from tests.support.sr_groups import lesion_groups

pytestmark = pytest.mark.external
S = 1.3
REGISTRATION_TOLERANCE_MM = 2.0  # tests/integration/test_registration.py says why


def _header_of(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True)


def _study_uid(path: Path) -> str:
    return str(_header_of(path).StudyInstanceUID)


def _group(sr: Path) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    (group,) = lesion_groups(hd.sr.srread(sr).content)
    return group


def _match_method(group: hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations) -> list[str]:
    return [str(item.TextValue) for item in group[0].ContentSequence
            if item.ValueType == "TEXT" and item.ConceptNameCodeSequence[0].CodeValue == codes.MATCH_METHOD.value]


def _named_priors(sr: Path) -> set[str]:
    return {str(sop.ReferencedSOPInstanceUID) for study in pydicom.dcmread(sr).get("PertinentOtherEvidenceSequence", [])
            for series in study.ReferencedSeriesSequence for sop in series.ReferencedSOPSequence}


@pytest.fixture(scope="module")
def moved(sts019: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(CT directory, RTSTRUCT) of STS_019 moved 5 degrees about z and 20 mm in-plane, ROI renamed."""
    baseline_rs = sts019 / "mask" / "RS.dcm"
    transform = rigid_about_z(5.0, (16.0, -12.0, 0.0), contour_points(baseline_rs).mean(axis=0))
    return write_moved_follow_up(sts019 / "image", baseline_rs, tmp_path_factory.mktemp("moved"), transform,
                                 study_date="20020301", roi_name="Lesion A")


@pytest.mark.parametrize("provider", ["dicomweb", "dimse"])
def test_a_follow_up_in_another_frame_is_registered_with_the_baseline_ct_from_pacs(tmp_path, sts019, moved, provider):
    ct, rtstruct = moved
    with running_site(tmp_path, prior_providers=provider) as site:
        site.orthanc.upload(*sorted((sts019 / "image").iterdir()))  # the PACS holds the baseline CT (no contours:
        site.send(sts019)                                            # Orthanc routes nothing)
        baseline_sr = site.sr(_study_uid(sts019 / "mask" / "RS.dcm"))
        site.in_pacs(baseline_sr)

        site.send(ct, rtstruct)
        follow_up_sr = site.sr(_study_uid(rtstruct))
        log = site.service.read_log()
        leftovers = list((site.service.var_dir / "retrieved").rglob("*"))

    assert str(_group(follow_up_sr).tracking_uid) == str(_group(baseline_sr).tracking_uid)
    assert _match_method(_group(follow_up_sr)) == ["geometry"]
    report = read_prior_report(pydicom.dcmread(follow_up_sr))
    assert any(note.startswith("prior frame of reference mapped by rigid registration") for note in report.notes), \
        report.notes
    # the contour moved with the anatomy: mapped by a right registration, the centroids coincide
    assert report.lesions[0].changes[codes.MATCH_DISTANCE.value] < REGISTRATION_TOLERANCE_MM
    assert str(pydicom.dcmread(baseline_sr).SOPInstanceUID) in _named_priors(follow_up_sr)
    assert "prior CT retrieved for a registration: 47 slices" in log
    assert leftovers == []


@dataclasses.dataclass
class Replicas:
    """Two `ingest` processes as two pods (own var directories, one scorer) and their PACS, which
    routes what it receives to B; the follow-up (STS_019, contour scaled by S, later date) is in
    Orthanc and has been scored by B, without a baseline, its SR in PACS."""

    a: Site
    b: Site
    ct: Path
    rtstruct: Path
    follow_up_uid: str
    first_sr: Path


@contextlib.contextmanager
def _follow_up_scored_on_b(root: Path, sts019: Path, provider: str) -> Iterator[Replicas]:
    find_orthanc()
    copy_study(sts019, root / "copy")
    ct, rtstruct = write_follow_up(root / "copy" / "image", root / "copy" / "mask" / "RS.dcm", root / "follow-up",
                                   scale=S, study_date="20020301")
    dicom_port, web_port = free_port(), free_port()
    scorer = Scorer(root / "scorer")
    replicas: list[RunningService] = []
    orthanc = None
    try:
        settings = site_settings(dicom_port, web_port, prior_providers=provider, scorer_address=f"{LOOPBACK}:{scorer.grpc_port}")
        replicas += [RunningService(root / f"var-{name}", "ingest", **settings) for name in "ab"]
        orthanc = Orthanc(root / "orthanc", modality_port=replicas[1].dicom_port, dicom_port=dicom_port,
                          http_port=web_port)
        a, b = (Site(orthanc, replica) for replica in replicas)
        orthanc.upload(*sorted(ct.iterdir()), rtstruct)  # routed to B once stable
        follow_up_uid = _study_uid(rtstruct)
        first_sr = b.sr(follow_up_uid)
        assert not _named_priors(first_sr)
        b.in_pacs(first_sr)
        yield Replicas(a, b, ct, rtstruct, follow_up_uid, first_sr)
    finally:
        for process in [orthanc, *replicas, scorer]:
            if process is not None:
                process.stop()


@pytest.mark.parametrize("provider", ["dicomweb", "dimse"])
def test_a_stale_follow_up_of_another_replica_is_retrieved_and_scored_again(tmp_path, sts019, provider):
    """The baseline arrives at A after B scored the follow-up. A, which holds nothing of the
    follow-up, retrieves it from PACS and scores it again against the baseline."""
    with _follow_up_scored_on_b(tmp_path, sts019, provider) as site:
        site.a.send(sts019)
        baseline_sr = site.a.sr(_study_uid(sts019 / "mask" / "RS.dcm"))
        site.a.in_pacs(baseline_sr)
        again = site.a.sr(site.follow_up_uid)
        site.a.in_pacs(again)
        a_log = site.a.service.read_log()
        indexed = site.a.service.indexed(site.follow_up_uid)

    assert str(pydicom.dcmread(baseline_sr).SOPInstanceUID) in _named_priors(again)
    assert str(_group(again).tracking_uid) == str(_group(baseline_sr).tracking_uid)
    low, high = diameter_percent_bounds(sts019 / "mask" / "RS.dcm", site.rtstruct, sts019 / "image")
    ldpctbl = next(m.value for m in _group(again).get_measurements() if m.name.value == codes.LD_PCT_BASELINE.value)
    assert low <= ldpctbl <= high
    replaced = pydicom.dcmread(again).PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert replaced.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == pydicom.dcmread(site.first_sr).SOPInstanceUID
    # A scored exactly what B scored: every CT slice and the contour, retrieved from PACS
    expected = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                for p in [*site.ct.iterdir(), site.rtstruct]}
    assert indexed == expected
    assert "re-send" not in a_log and site.follow_up_uid not in a_log


def test_a_stale_follow_up_pacs_no_longer_holds_is_counted_in_the_log(tmp_path, sts019):
    """The follow-up's CT removed from PACS after B scored it: A cannot retrieve it, says so, and
    the baseline is still reconciled (the question is not asked again and again)."""
    with _follow_up_scored_on_b(tmp_path, sts019, "dicomweb") as site:
        ct_series = _header_of(next(site.ct.iterdir())).SeriesInstanceUID
        (series,) = site.a.orthanc.post("/tools/find", {"Level": "Series", "Query": {"SeriesInstanceUID": ct_series}})
        site.a.orthanc.delete(f"/series/{series}")
        site.a.send(sts019)
        site.a.sr(_study_uid(sts019 / "mask" / "RS.dcm"))
        wait_until(lambda: "re-send it to be scored again" in site.a.service.read_log(), TIMEOUT_S,
                   "A to give up retrieving the follow-up")
        a_log = site.a.service.read_log()
        assert site.a.service.study_state(site.follow_up_uid) is None
        assert not site.a.service.indexed(site.follow_up_uid)

    assert "retrieving it from PACS failed: dicomweb: DICOMweb WADO-RS failed: HTTP 404" in a_log
    assert "1 later study of the patient, scored by another ingest replica, did not compare with this report and " \
           "could not be retrieved" in a_log


# --- a study whose spooled instances spool retention removed, retrieved again ------------------

def _prune_now(site: Site) -> str:
    """`radiomics-cds prune` beside the running service, for studies done over a second ago, once
    every delivery of the site's results is finished (retention keeps a study until then)."""
    def delivered() -> bool:
        states = [row[0] for destination in ("pacs", "pacs-summary") for row in site.service.deliveries(destination)]
        return bool(states) and set(states) == {"delivered"}
    wait_until(delivered, TIMEOUT_S, "every result to be delivered")
    time.sleep(1.0)
    done = subprocess.run(CLI + ["prune", "--days", str(0.5 / 86400)], env=site.service.env, cwd=REPO,
                          capture_output=True, text=True, check=True)
    return done.stdout


def _spooled(site: Site) -> set[str]:
    return {path.stem for path in (site.service.var_dir / "spool").rglob("*.dcm")}


def test_a_corrected_rtstruct_after_retention_removed_the_study_is_scored_with_its_instances_from_pacs(
        tmp_path, sts019):
    """STS_019 reached the service from PACS (Orthanc's routing) and was scored; retention then
    removed its spooled instances. A corrected RTSTRUCT (ROI 1 split in two, a new instance in a
    new series) arrives alone: the CT and the first RTSTRUCT are retrieved from PACS by C-GET,
    put back, and the study is scored with the corrected contours."""
    rtstruct = sts019 / "mask" / "RS.dcm"
    study_uid = _study_uid(rtstruct)
    with running_site(tmp_path, prior_providers="dimse") as site:
        site.orthanc.upload(*sorted((sts019 / "image").iterdir()), rtstruct)  # routed to the service once stable
        first_sr = site.sr(study_uid)
        site.in_pacs(first_sr)
        received = site.service.indexed(study_uid)
        assert "freed" in _prune_now(site) and not _spooled(site)

        corrected = write_split(rtstruct, tmp_path / "corrected" / "RS.dcm")
        site.send(corrected)  # indexed before storescu is answered: the study is receiving again
        state, detail = site.service.wait_for(study_uid, timeout_s=TIMEOUT_S)
        second_sr = site.service.result_sr(study_uid)
        log = site.service.read_log()
        spooled = _spooled(site)
        restorings = site.service.metric("rcds_study_stage_seconds_count", stage="restoring")

    assert state == "done", detail
    assert second_sr not in (None, first_sr)
    assert spooled == received | {str(_header_of(corrected).SOPInstanceUID)}
    names = sorted(str(group.tracking_identifier) for group in lesion_groups(hd.sr.srread(second_sr).content))
    assert names == sorted(f"{roi.ROIName} (ROI {roi.ROINumber})" for roi in _header_of(corrected).StructureSetROISequence)
    assert "instances missing from the spool retrieved from PACS again" in log and restorings == 1
    assert study_uid not in log


def test_a_follow_up_retention_removed_is_compared_with_a_late_baseline_from_its_instances_in_pacs(
        tmp_path, sts019):
    """The follow-up (STS_019, contour scaled by S, later date) reached the service from PACS and
    was scored without a baseline; retention removed its spooled instances. The baseline is scored
    afterwards: reconciliation finds the follow-up stale, its instances are retrieved from PACS by
    WADO-RS, and its new SR compares with the baseline."""
    copy_study(sts019, tmp_path / "copy")
    ct, rtstruct = write_follow_up(tmp_path / "copy" / "image", tmp_path / "copy" / "mask" / "RS.dcm",
                                   tmp_path / "follow-up", scale=S, study_date="20020301")
    follow_up_uid = _study_uid(rtstruct)
    with running_site(tmp_path, prior_providers="dicomweb") as site:
        site.orthanc.upload(*sorted(ct.iterdir()), rtstruct)
        first_sr = site.sr(follow_up_uid)
        site.in_pacs(first_sr)
        assert not _named_priors(first_sr)
        assert "freed" in _prune_now(site) and not _spooled(site)

        site.send(sts019)
        baseline_sr = site.sr(_study_uid(sts019 / "mask" / "RS.dcm"))
        site.in_pacs(baseline_sr)
        wait_until(lambda: site.service.result_sr(follow_up_uid) not in (None, first_sr), TIMEOUT_S,
                   "the follow-up scored again")
        state, detail = site.service.wait_for(follow_up_uid)
        again = site.service.result_sr(follow_up_uid)
        log = site.service.read_log()

    assert state == "done", detail
    assert str(pydicom.dcmread(baseline_sr).SOPInstanceUID) in _named_priors(again)
    low, high = diameter_percent_bounds(sts019 / "mask" / "RS.dcm", rtstruct, sts019 / "image")
    ldpctbl = next(m.value for m in _group(again).get_measurements() if m.name.value == codes.LD_PCT_BASELINE.value)
    assert low <= ldpctbl <= high
    assert "instances missing from the spool retrieved from PACS again" in log
    assert "send it again to have it compared" not in log


def test_a_corrected_rtstruct_after_retention_and_pacs_dropping_the_ct_fails_at_once_saying_so(tmp_path, sts019):
    """As above, but PACS no longer holds the CT (deleted from Orthanc after the prune): WADO-RS
    answers 404, which asking again will not change, so the study fails at once (not after an
    hour of retries), saying what is missing, what PACS answered and what to do."""
    rtstruct = sts019 / "mask" / "RS.dcm"
    study_uid = _study_uid(rtstruct)
    with running_site(tmp_path, prior_providers="dicomweb") as site:
        site.orthanc.upload(*sorted((sts019 / "image").iterdir()), rtstruct)
        site.in_pacs(site.sr(study_uid))
        assert "freed" in _prune_now(site)
        (series,) = site.orthanc.post("/tools/find", {"Level": "Series", "Query": {
            "SeriesInstanceUID": str(_header_of(next((sts019 / "image").iterdir())).SeriesInstanceUID)}})
        site.orthanc.delete(f"/series/{series}")

        site.send(write_split(rtstruct, tmp_path / "corrected" / "RS.dcm"))
        state, reason = site.service.wait_for(study_uid, timeout_s=TIMEOUT_S)
        log = site.service.read_log()

    assert state == "failed"
    assert reason.startswith("48 of its 49 received instances were removed from the spool by retention on "), reason
    assert (" UTC (spool_retention_days), and putting them back from PACS failed (dicomweb: DICOMweb WADO-RS failed: "
            "HTTP 404): send the study again, then rescore it  ") in reason, reason  # then status's deliveries
    assert "retry in" not in log
