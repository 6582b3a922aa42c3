"""Orthanc as the real PACS: the reference auto-routing setup (deploy/orthanc/) end to end.

One Orthanc (Debian package `orthanc`, its own configuration generated from deploy/orthanc/,
storage in a temporary folder, free loopback ports) and one `radiomics-cds serve` whose PACS is
that Orthanc. A study is uploaded into Orthanc over its REST API, as a modality's images arrive;
Orthanc's Lua routing script sends the stable study's CT and contours to radiomics-cds, which
sends its SR back; the SR is then looked up in Orthanc, through Orthanc's REST API, in the same
study and patient as the CT. The cases (CT + RTSTRUCT, CT + SEG, CT first and RTSTRUCT later)
are different studies and share the two processes.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import highdicom as hd
import pydicom
import pytest

from service.config import Config
from service.sop_classes import STORAGE_SOP_CLASSES
from tests.support.service import QUIET_SECONDS, RunningService
from tests.support.orthanc import (MODALITY, REFERENCE_DIR, ROUTING_SCRIPT, Orthanc,
                                   find_orthanc, reference_config)
from tests.support.processes import free_port
from tests.support.studies import copy_study
from tests.support.sr_groups import lesion_groups

pytestmark = pytest.mark.external
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
STABLE_AGE_S = 2
ROUTE_TIMEOUT_S = 120


@dataclasses.dataclass
class Pacs:
    orthanc: Orthanc
    service: RunningService

    def diagnostics(self) -> str:
        try:
            status = self.service.status()
        except Exception as error:  # the report must not hide the original failure
            status = f"(status failed: {error})"
        try:
            jobs = self.orthanc.get("/jobs?expand")
        except Exception as error:
            jobs = f"(jobs failed: {error})"
        return (f"\nradiomics-cds status: {status}\nOrthanc jobs: {jobs}"
                f"\n--- radiomics-cds log (tail) ---\n{self.service.read_log()[-4000:]}"
                f"\n--- Orthanc log (tail) ---\n{self.orthanc.read_log(4000)}")


@pytest.fixture(scope="module")
def pacs(tmp_path_factory, data_dir):
    find_orthanc()  # skip (or fail in CI) before starting anything
    root = tmp_path_factory.mktemp("orthanc-pacs")
    orthanc_dicom_port = free_port()
    with pytest.MonkeyPatch.context() as env:  # RunningService passes os.environ on to `serve`
        env.setenv("RCDS_PACS_HOST", "127.0.0.1")
        env.setenv("RCDS_PACS_PORT", str(orthanc_dicom_port))
        env.setenv("RCDS_PACS_AE_TITLE", reference_config()["DicomAet"])
        env.setenv("RCDS_DELIVERY_INITIAL_BACKOFF_SECONDS", "1")
        service = RunningService(root / "var", quiet_seconds=QUIET_SECONDS)
    try:
        orthanc = Orthanc(root / "orthanc", modality_port=service.dicom_port, dicom_port=orthanc_dicom_port,
                          stable_age=STABLE_AGE_S)
    except BaseException:
        service.stop()
        raise
    yield Pacs(orthanc, service)
    orthanc.stop()
    service.stop()


def _received(service: RunningService) -> dict[str, float]:
    return {dict(labels)["kind"]: value for (name, labels), value in service.metrics().items()
            if name == "rcds_instances_received_total"}


def _store_jobs(orthanc: Orthanc) -> list[dict]:
    return [job for job in orthanc.get("/jobs?expand") if job["Type"] == "DicomModalityStore"]


def _series(orthanc: Orthanc, study_id: str, modality: str) -> list[dict]:
    return [s for s in orthanc.get(f"/studies/{study_id}/series") if s["MainDicomTags"].get("Modality") == modality]


def _poll(condition: Callable[[], Any], timeout_s: float, failure: Callable[[], str], interval_s: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(failure())


def _route_through_orthanc(pacs: Pacs, files: list[Path], tmp_path: Path) -> dict:
    """Upload a study into Orthanc and wait for radiomics-cds' SR to be in Orthanc; then wait
    until the study is stable again (the SR's arrival fires the routing script once more) and a
    little longer, so that a re-routing or a second SR would have happened."""
    orthanc, service = pacs.orthanc, pacs.service
    received_before = _received(service)
    jobs_before = {job["ID"] for job in _store_jobs(orthanc)}
    answers = orthanc.upload(*files)
    (study_id,) = {a["ParentStudy"] for a in answers}
    (patient_id,) = {a["ParentPatient"] for a in answers}

    started = time.monotonic()
    sr_series = _poll(lambda: _series(orthanc, study_id, "SR"), ROUTE_TIMEOUT_S,
                      lambda: f"no SR in Orthanc study {study_id} after {ROUTE_TIMEOUT_S} s" + pacs.diagnostics())[0]
    routed_s = time.monotonic() - started
    _poll(lambda: orthanc.get(f"/studies/{study_id}")["IsStable"], 30,
          lambda: "the study did not become stable again after the SR arrived" + pacs.diagnostics())
    time.sleep(2)  # the routing script runs on that stable event: give it time to act (or to loop)
    received = {kind: value - received_before.get(kind, 0.0) for kind, value in _received(service).items()}
    received = {kind: value for kind, value in received.items() if value}
    return {
        "study_id": study_id, "patient_id": patient_id, "answers": answers, "routed_s": routed_s,
        "sr_series": orthanc.get(f"/series/{sr_series['ID']}"), "received": received,
        "jobs": [job for job in _store_jobs(orthanc) if job["ID"] not in jobs_before],
        "srs": _series(orthanc, study_id, "SR"), "tmp_path": tmp_path,
    }


def _check_sr_in_orthanc(pacs: Pacs, routed: dict, n_ct: int, contour_kind: str) -> hd.sr.Comprehensive3DSR:
    """Exactly one SR, in the CT's Orthanc study and patient, with the CT's Study Instance UID and
    Patient ID, and nothing routed twice. Returns the SR read back with highdicom."""
    orthanc, diagnostics = pacs.orthanc, pacs.diagnostics
    assert len(routed["srs"]) == 1, f"SR series in the study: {routed['srs']}" + diagnostics()
    assert len(routed["sr_series"]["Instances"]) == 1, routed["sr_series"]
    (sr_id,) = routed["sr_series"]["Instances"]
    sr_instance = orthanc.get(f"/instances/{sr_id}")
    sr_tags = orthanc.get(f"/instances/{sr_id}/simplified-tags")
    (ct_series,) = _series(orthanc, routed["study_id"], "CT")
    assert len(ct_series["Instances"]) == n_ct
    ct_tags = orthanc.get(f"/instances/{ct_series['Instances'][0]}/simplified-tags")

    # same study and patient, by DICOM identifiers ...
    assert sr_tags["StudyInstanceUID"] == ct_tags["StudyInstanceUID"]
    assert sr_tags["PatientID"] == ct_tags["PatientID"]
    assert sr_tags["SOPClassUID"] == COMPREHENSIVE_3D_SR
    # ... and as Orthanc resources: the SR sits in the very study (and patient) the CT is in
    assert routed["sr_series"]["ParentStudy"] == ct_series["ParentStudy"] == routed["study_id"]
    assert sr_instance["ParentSeries"] == routed["sr_series"]["ID"]
    assert orthanc.get(f"/studies/{routed['study_id']}")["ParentPatient"] == routed["patient_id"]
    assert [s["ID"] for s in orthanc.get(f"/patients/{routed['patient_id']}/studies")].count(routed["study_id"]) == 1
    # received from radiomics-cds over DICOM (not uploaded), under its AE title
    sr_metadata = orthanc.get(f"/instances/{sr_id}/metadata?expand")
    assert sr_metadata["Origin"] == "DicomProtocol"
    assert sr_metadata["RemoteAET"] == Config().dicom_ae_title

    # routed once, as one job (one association), the CT and the contours and nothing else; the
    # SR's own arrival made the study stable again without sending anything: no loop
    assert routed["received"] == {"ct": n_ct, contour_kind: 1}, routed["received"]
    assert len(routed["jobs"]) == 1 and routed["jobs"][0]["State"] == "Success", routed["jobs"]
    state, detail = pacs.service.status()[ct_tags["StudyInstanceUID"]]
    assert state == "done", detail

    sr_path = routed["tmp_path"] / "sr.dcm"
    sr_path.write_bytes(orthanc.get_bytes(f"/instances/{sr_id}/file"))
    return hd.sr.srread(sr_path)


def _referenced_sop_instances(items) -> set[str]:
    """Every Referenced SOP Instance UID below these content items (a highdicom group is a
    sequence of one container item)."""
    found = set()
    for item in items:
        for reference in item.get("ReferencedSOPSequence", []):
            found.add(str(reference.ReferencedSOPInstanceUID))
        found |= _referenced_sop_instances(item.get("ContentSequence", []))
    return found


# --- the reference configuration ---------------------------------------------------------------


def test_reference_configuration_fits_the_routing_script_and_radiomics_cds():
    config = reference_config()
    script = ROUTING_SCRIPT.read_text()
    target = re.search(r"^local TARGET = '([^']+)'", script, re.M).group(1)
    mark = re.search(r"^local MARK = '([^']+)'", script, re.M).group(1)
    assert target == MODALITY
    entry = config["DicomModalities"][target]
    defaults = Config()
    assert (entry["AET"], entry["Port"]) == (defaults.dicom_ae_title, defaults.dicom_port)
    assert entry["AllowStore"] is True  # lets the SR in where stores from unknown AEs are refused
    # priors: find and get (C-GET brings the SR back on our association); never move (README, "Reference PACS setup")
    assert entry["AllowFind"] is True and entry["AllowGet"] is True and entry["AllowMove"] is False
    assert config["DicomWeb"]["Enable"] is True and config["DicomWeb"]["SeriesMetadata"] == "Full"
    assert 1024 <= config["UserMetadata"][mark] <= 65535  # Orthanc's range for user metadata
    assert [REFERENCE_DIR / s for s in config["LuaScripts"]] == [ROUTING_SCRIPT]  # relative to the config
    assert config["StableAge"] >= 10  # a site's value: not the tests' 2 s
    # the script routes exactly the SOP classes radiomics-cds accepts
    routed = set(re.findall(r"\['(1\.2\.840\.10008\.[0-9.]+)'\] = true", script))
    assert routed == {str(uid) for uid in STORAGE_SOP_CLASSES}


def test_orthanc_runs_the_reference_configuration_and_reaches_radiomics_cds(pacs):
    orthanc = pacs.orthanc
    assert orthanc.get("/system")["DicomAet"] == reference_config()["DicomAet"]
    modalities = orthanc.get("/modalities?expand")
    assert modalities[MODALITY]["AET"] == Config().dicom_ae_title
    assert modalities[MODALITY]["Port"] == pacs.service.dicom_port
    orthanc.post(f"/modalities/{MODALITY}/echo", {})  # C-ECHO to radiomics-cds: raises unless 200
    assert 'radiomics-cds routing: stable studies with CT + RTSTRUCT/SEG go to modality "radiomics-cds"' \
        in orthanc.read_log(), orthanc.read_log()


# --- end to end ---------------------------------------------------------------------------------


def test_sts019_ct_and_rtstruct_are_routed_and_the_sr_comes_back_into_the_study(pacs, sts019, tmp_path):
    ct_files = sorted((sts019 / "image").iterdir())
    rtstruct_file = sts019 / "mask" / "RS.dcm"
    # contours first: the routing waits for the stable study, so the order of arrival is free
    routed = _route_through_orthanc(pacs, [rtstruct_file, *ct_files], tmp_path)
    sr = _check_sr_in_orthanc(pacs, routed, len(ct_files), "rtstruct")

    rtstruct = pydicom.dcmread(rtstruct_file)
    lesion_rois = {int(o.ReferencedROINumber) for o in rtstruct.RTROIObservationsSequence
                   if o.get("RTROIInterpretedType", "") in Config().lesion_roi_types}
    names = {int(r.ROINumber): r.ROIName for r in rtstruct.StructureSetROISequence}
    groups = lesion_groups(sr.content)
    assert len(groups) == len(lesion_rois) == 1
    for group, number in zip(groups, sorted(lesion_rois)):
        assert names[number] in str(group.tracking_identifier)  # "GTV_Mass_CT ..."
        assert rtstruct.SOPInstanceUID in _referenced_sop_instances(group)
        volume = next(m for m in group.get_measurements() if m.name.meaning == "Volume")
        assert volume.unit.value == "mL" and volume.value > 0
    assert routed["routed_s"] < 60, f"took {routed['routed_s']:.1f} s"


def test_ct_and_seg_are_routed_and_the_sr_comes_back_into_the_study(pacs, data_dir, tmp_path):
    ct_files = sorted((data_dir / "ct-seg" / "ct").iterdir())
    seg_file = data_dir / "ct-seg" / "partial_overlaps.dcm"
    routed = _route_through_orthanc(pacs, [*ct_files, seg_file], tmp_path)
    sr = _check_sr_in_orthanc(pacs, routed, len(ct_files), "seg")

    seg = pydicom.dcmread(seg_file)
    groups = lesion_groups(sr.content)
    assert len(groups) == len(seg.SegmentSequence) == 5
    segments = set()
    for group in groups:
        reference = group.referenced_segment
        assert reference is not None
        assert str(reference.referenced_sop_instance_uid) == seg.SOPInstanceUID
        segments.update(reference.referenced_segment_numbers)
    assert segments == {int(s.SegmentNumber) for s in seg.SegmentSequence}
    assert routed["routed_s"] < 60, f"took {routed['routed_s']:.1f} s"


def test_ct_without_contours_waits_in_orthanc_until_its_rtstruct_arrives(pacs, sts019, tmp_path):
    """The usual clinical order: the CT comes from the scanner, the contours later from the
    planning system. A stable CT-only study is not sent (it could not be scored); when the
    RTSTRUCT arrives the study is stable again and CT + RTSTRUCT go together."""
    orthanc = pacs.orthanc
    study_uid = copy_study(sts019, tmp_path / "study")  # fresh UIDs: a study Orthanc has not seen
    ct_files = sorted((tmp_path / "study" / "image").iterdir())
    received_before = _received(pacs.service)
    jobs_before = len(_store_jobs(orthanc))
    (study_id,) = {a["ParentStudy"] for a in orthanc.upload(*ct_files)}
    waiting = f"radiomics-cds routing: study {study_id} has no RTSTRUCT/SEG yet, not sent"
    _poll(lambda: waiting in orthanc.read_log(), 30,
          lambda: "the routing script did not consider the CT-only study" + pacs.diagnostics())
    assert _received(pacs.service) == received_before
    assert len(_store_jobs(orthanc)) == jobs_before
    assert study_uid not in pacs.service.status()

    routed = _route_through_orthanc(pacs, [tmp_path / "study" / "mask" / "RS.dcm"], tmp_path)
    assert routed["study_id"] == study_id
    sr = _check_sr_in_orthanc(pacs, routed, len(ct_files), "rtstruct")
    assert len(lesion_groups(sr.content)) == 1
