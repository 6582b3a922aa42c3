"""The running service pulls priors from a real PACS and reconciles (docs/architecture.md, "Priors from PACS");
without a PACS, from its own outbox (the `directory` source).

One Orthanc (reference configuration, DICOMweb plugin) per case is the service's PACS: `serve`
delivers its SRs there and looks priors up there (DICOMweb, or C-FIND + C-GET). The baseline is
STS_019 as it is; the follow-up is a copy of it (fresh UIDs) with the contour scaled by S about
its centroid and a later date (tests/support/follow_up_study.py): the expected % change comes
from the polygons, never from the service.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import highdicom as hd
import pydicom
import pytest

from service.ingest.spool import study_key
from service.priors import read_prior_report
from tests.support.follow_up_study import diameter_percent_bounds, write_follow_up
from tests.support.moved_study import contour_points, rigid_about_z, spatial_registration, write_moved_follow_up
from tests.support.orthanc import Orthanc, find_orthanc
from tests.support.pacs_site import TIMEOUT_S, Site, running_site, send, site_settings, study_uid_of
from tests.support.processes import LOOPBACK, free_port, wait_until
from tests.support.service import QUIET_SECONDS, RunningService, Scorer
from tests.support.studies import copy_study
from tests.support.sr_groups import lesion_groups

pytestmark = pytest.mark.external
S = 1.3
FOLLOW_UP_DATE = "20020301"  # STS_019 is of 20011127


@pytest.fixture(params=["dicomweb", "dimse"])
def site(request, tmp_path) -> Iterator[Site]:
    with running_site(tmp_path, prior_providers=request.param) as running:
        yield running


@pytest.fixture
def follow_up(sts019, tmp_path) -> tuple[Path, Path, str]:
    """(CT directory, RTSTRUCT, Study Instance UID) of the synthetic follow-up."""
    copy_study(sts019, tmp_path / "copy")
    ct, rtstruct = write_follow_up(tmp_path / "copy" / "image", tmp_path / "copy" / "mask" / "RS.dcm",
                                   tmp_path / "follow-up", scale=S, study_date=FOLLOW_UP_DATE)
    return ct, rtstruct, str(pydicom.dcmread(rtstruct, stop_before_pixels=True).StudyInstanceUID)


def _lookups(service: RunningService) -> dict[str, float]:
    """The service's rcds_prior_lookups_total of the outcomes a source's answer gives."""
    return {outcome: service.metric("rcds_prior_lookups_total", outcome=outcome)
            for outcome in ("none", "found", "unavailable")}


def _group(sr: Path) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    (group,) = lesion_groups(hd.sr.srread(sr).content)
    return group


def _ldpctbl(sr: Path) -> float:
    return next(m.value for m in _group(sr).get_measurements() if m.name.value == "LDPCTBL")


def _assert_follows(follow_up_sr: Path, baseline_sr: Path, sts019: Path, follow_up_rs: Path) -> None:
    """The follow-up's SR carries the baseline's tracking UID, names its SR as the prior compared
    with, and states the % change the scaled polygons give."""
    assert str(_group(follow_up_sr).tracking_uid) == str(_group(baseline_sr).tracking_uid)
    evidence = pydicom.dcmread(follow_up_sr).PertinentOtherEvidenceSequence
    named = {sop.ReferencedSOPInstanceUID for study in evidence for series in study.ReferencedSeriesSequence
             for sop in series.ReferencedSOPSequence}
    assert str(pydicom.dcmread(baseline_sr).SOPInstanceUID) in named
    low, high = diameter_percent_bounds(sts019 / "mask" / "RS.dcm", follow_up_rs, sts019 / "image")
    assert low <= _ldpctbl(follow_up_sr) <= high


def test_the_follow_up_is_compared_with_the_baseline_from_pacs(site, sts019, follow_up):
    ct, rtstruct, follow_up_uid = follow_up
    send(site.service, sts019)
    baseline_sr = site.sr(study_uid_of(sts019))
    site.in_pacs(baseline_sr)

    send(site.service, ct, rtstruct)
    follow_up_sr = site.sr(follow_up_uid)

    _assert_follows(follow_up_sr, baseline_sr, sts019, rtstruct)
    site.in_pacs(follow_up_sr)
    log = site.service.read_log()
    assert "STS_019" not in log and follow_up_uid not in log
    assert _lookups(site.service) == {"none": 1, "found": 1, "unavailable": 0}  # the baseline's, the follow-up's


def test_with_the_directory_source_over_its_own_outbox_serve_compares_without_a_pacs(tmp_path, sts019, follow_up):
    """A single node without PACS query rights: prior_directory is serve's own outbox, where
    the baseline's SR was written."""
    ct, rtstruct, follow_up_uid = follow_up
    var = tmp_path / "var"
    service = RunningService(var, quiet_seconds=QUIET_SECONDS, prior_providers="directory",
                             prior_directory=str(var / "outbox"))
    try:
        send(service, sts019)
        service.wait_for(study_uid_of(sts019), timeout_s=TIMEOUT_S)
        baseline_sr = service.result_sr(study_uid_of(sts019))
        assert baseline_sr is not None  # its outbox existed from the start: no prior, none unavailable
        assert not [n for n in read_prior_report(pydicom.dcmread(baseline_sr)).notes if n.startswith("priors")]
        send(service, ct, rtstruct)
        assert service.wait_for(follow_up_uid, timeout_s=TIMEOUT_S)[0] == "done"
        follow_up_sr = service.result_sr(follow_up_uid)
        assert follow_up_sr is not None, service.status()
        _assert_follows(follow_up_sr, baseline_sr, sts019, rtstruct)
        notes = read_prior_report(pydicom.dcmread(follow_up_sr)).notes
        assert not [note for note in notes if note.startswith(("prior SR ignored", "priors unavailable"))], notes
    finally:
        service.stop()


def test_a_baseline_arriving_after_its_follow_up_has_the_follow_up_scored_again(tmp_path, sts019, follow_up):
    ct, rtstruct, follow_up_uid = follow_up
    with running_site(tmp_path / "site", prior_providers="dicomweb") as site:
        send(site.service, ct, rtstruct)
        first_sr = site.sr(follow_up_uid)
        assert not hasattr(pydicom.dcmread(first_sr), "PertinentOtherEvidenceSequence")
        site.in_pacs(first_sr)

        send(site.service, sts019)
        baseline_sr = site.sr(study_uid_of(sts019))
        # the index's result column, not site.sr: that runs `status` (a process) on every poll
        wait_until(lambda: site.service.result_sr(follow_up_uid) not in (None, first_sr), TIMEOUT_S,
                   "reconciliation to score the follow-up again")

        again = site.sr(follow_up_uid)  # once done: its current SR, as `status` reports the study
        assert again != first_sr
        _assert_follows(again, baseline_sr, sts019, rtstruct)
        replaced = pydicom.dcmread(again).PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
        assert replaced.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == pydicom.dcmread(first_sr).SOPInstanceUID


UNAVAILABLE = {  # case -> (site settings, how the reason starts)
    "dicomweb-down": ({"prior_providers": "dicomweb", "prior_dicomweb_url": f"http://127.0.0.1:{free_port()}/dicom-web"},
                      "dicomweb: DICOMweb QIDO-RS failed: connection failed"),
    "dimse-find-refused": ({"prior_providers": "dimse", "modality_rights": {"AllowFind": False}}, "dimse: DIMSE"),
}


@pytest.mark.parametrize("case", UNAVAILABLE)
def test_with_priors_unavailable_the_follow_up_is_still_scored_and_says_so(tmp_path, sts019, follow_up, case):
    ct, rtstruct, follow_up_uid = follow_up
    settings, reason = UNAVAILABLE[case]
    with running_site(tmp_path / "site", **settings) as site:
        send(site.service, ct, rtstruct)
        state, _ = site.service.wait_for(follow_up_uid, timeout_s=TIMEOUT_S)
        assert state == "done"
        sr = site.sr(follow_up_uid)
        notes = read_prior_report(pydicom.dcmread(sr)).notes
        assert any(note.startswith(f"priors unavailable: {reason}") for note in notes), notes
        log = site.service.read_log()
        assert f"prior source {settings['prior_providers']} failed" in log
        assert f"study {study_key(follow_up_uid)}: priors unavailable, compared with none" in log
        assert _lookups(site.service) == {"none": 0, "found": 0, "unavailable": 1}
        site.in_pacs(sr)  # delivered all the same


def test_a_follow_up_scored_while_pacs_was_down_is_scored_again_once_pacs_answers(tmp_path, sts019, follow_up):
    """PACS (DICOMweb priors) holds the baseline's SR, then stops: the follow-up is scored without
    it, and `status` says so. PACS started again (the same storage and ports), the running
    service asks again by itself, pacs_query_initial_backoff_seconds (here 3) after the follow-up
    was done, then 6 s later, and so on, and scores it again: compared with the baseline, its old
    SR the predecessor, no longer marked."""
    ct, rtstruct, follow_up_uid = follow_up
    with running_site(tmp_path / "site", prior_providers="dicomweb", pacs_query_initial_backoff_seconds=3) as site:
        send(site.service, sts019)
        baseline_sr = site.sr(study_uid_of(sts019))
        site.in_pacs(baseline_sr)
        site.orthanc.stop()

        send(site.service, ct, rtstruct)
        first_sr = site.sr(follow_up_uid)
        first_uid = str(pydicom.dcmread(first_sr, stop_before_pixels=True).SOPInstanceUID)
        state, detail = site.service.status()[follow_up_uid]
        assert (state, detail.startswith(f"SR {first_uid} (priors unavailable)")) == ("done", True), detail
        site.orthanc = Orthanc(site.orthanc.workdir, modality_port=site.service.dicom_port,
                               dicom_port=site.orthanc.dicom_port, http_port=site.orthanc.http_port)
        try:
            wait_until(lambda: site.service.result_sr(follow_up_uid) not in (None, first_sr), TIMEOUT_S,
                       "the follow-up to be scored again")
            again = site.sr(follow_up_uid)
            _assert_follows(again, baseline_sr, sts019, rtstruct)
            replaced = pydicom.dcmread(again).PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
            assert replaced.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == first_uid
            assert "(priors unavailable)" not in site.service.status()[follow_up_uid][1]
            log = site.service.read_log()
            assert f"study {study_key(follow_up_uid)}: scored again, its priors are available now" in log
            assert "STS_019" not in log and follow_up_uid not in log
        finally:
            site.orthanc.stop()


def test_the_follow_up_on_another_ingest_replica_is_compared_with_the_same_baseline(tmp_path, sts019, follow_up):
    """Two `ingest` processes (own var directories, one scorer), as two pods: the baseline on one,
    the follow-up on the other, which has nothing of the baseline but what PACS holds."""
    ct, rtstruct, follow_up_uid = follow_up
    find_orthanc()
    dicom_port, web_port = free_port(), free_port()
    scorer = Scorer(tmp_path / "scorer")
    replicas: list[RunningService] = []
    orthanc = None
    try:
        settings = site_settings(dicom_port, web_port, prior_providers="dicomweb",
                             scorer_address=f"{LOOPBACK}:{scorer.grpc_port}")
        replicas += [RunningService(tmp_path / f"var-{n}", "ingest", **settings) for n in (1, 2)]
        orthanc = Orthanc(tmp_path / "orthanc", modality_port=replicas[0].dicom_port, dicom_port=dicom_port,
                          http_port=web_port)
        first, second = (Site(orthanc, replica) for replica in replicas)
        send(first.service, sts019)
        baseline_sr = first.sr(study_uid_of(sts019))
        first.in_pacs(baseline_sr)

        send(second.service, ct, rtstruct)

        _assert_follows(second.sr(follow_up_uid), baseline_sr, sts019, rtstruct)
        assert second.service.study_state(study_uid_of(sts019)) is None  # the prior never entered its queue
    finally:
        for process in [orthanc, *replicas, scorer]:
            if process is not None:
                process.stop()


def _texts(item: pydicom.Dataset, code: str) -> list[str]:
    """Every TEXT value below `item` whose concept name has this code value."""
    found = []
    for child in item.get("ContentSequence", []):
        if child.ValueType == "TEXT" and child.ConceptNameCodeSequence[0].CodeValue == code:
            found.append(str(child.TextValue))
        found += _texts(child, code)
    return found


def test_a_follow_up_in_a_new_frame_sent_with_its_registration_is_matched_through_it(tmp_path, sts019):
    """The follow-up is STS_019 moved by a known rigid transform into a new Frame of Reference, its
    ROI renamed (tests/support/moved_study.py), so only geometry can match it; PACS routes its
    Spatial Registration with it. A rigid motion leaves the lesion's size as it was: the expected
    change comes from the two polygons."""
    baseline_rs = sts019 / "mask" / "RS.dcm"
    transform = rigid_about_z(5.0, (16.0, -12.0, 0.0), contour_points(baseline_rs).mean(axis=0))
    ct, rtstruct = write_moved_follow_up(sts019 / "image", baseline_rs, tmp_path / "moved", transform,
                                         study_date=FOLLOW_UP_DATE, roi_name="Lesion A")
    registration = tmp_path / "moved" / "reg" / "REG.dcm"
    registration.parent.mkdir()
    prior_frame = pydicom.dcmread(next((sts019 / "image").iterdir()), stop_before_pixels=True).FrameOfReferenceUID
    spatial_registration(registration, ct, prior_frame, transform)
    follow_up_uid = str(pydicom.dcmread(rtstruct, stop_before_pixels=True).StudyInstanceUID)
    with running_site(tmp_path / "site", prior_providers="dicomweb") as site:
        send(site.service, sts019)
        baseline_sr = site.sr(study_uid_of(sts019))
        site.in_pacs(baseline_sr)

        send(site.service, ct, registration, rtstruct)
        follow_up_sr = site.sr(follow_up_uid)
        assert pydicom.dcmread(registration).SOPInstanceUID in site.service.indexed(follow_up_uid)
        assert site.service.metric("rcds_instances_received_total", kind="reg") == 1

    _assert_follows(follow_up_sr, baseline_sr, sts019, rtstruct)
    assert _texts(pydicom.dcmread(follow_up_sr), "MATCHMETH") == ["geometry"]
    notes = read_prior_report(pydicom.dcmread(follow_up_sr)).notes
    assert "prior frame of reference mapped by a Spatial Registration object" in notes, notes


def test_a_follow_up_sent_with_its_baseline_compares_with_it_in_its_first_report(tmp_path, sts019, follow_up):
    """One association: the baseline's CT, the whole follow-up, then the baseline's contours. The
    follow-up is complete first, while its baseline is still arriving: it waits for the baseline
    to be scored and its SR to reach PACS, so its one SR compares with the baseline (no second
    SR from reconciliation)."""
    ct, rtstruct, follow_up_uid = follow_up
    with running_site(tmp_path / "site", prior_providers="dicomweb") as site:
        send(site.service, sts019 / "image", ct, rtstruct, sts019 / "mask" / "RS.dcm")
        follow_up_sr = site.sr(follow_up_uid)
        baseline_sr = site.sr(study_uid_of(sts019))

        _assert_follows(follow_up_sr, baseline_sr, sts019, rtstruct)
        assert "PredecessorDocumentsSequence" not in pydicom.dcmread(follow_up_sr)  # its first SR
        log = site.service.read_log()
        assert "waiting (up to 600 s) for an earlier study of the patient in progress here" in log
        assert "STS_019" not in log and follow_up_uid not in log
