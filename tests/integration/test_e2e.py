"""The whole service as a user runs it: `radiomics-cds serve` in a subprocess, dcmtk's storescu
as the sending PACS, dciodvfy and highdicom on the SR, fhir.resources R4B on the Bundle.

Bad studies are made from copies of STS_019 with fresh UIDs (never modifying shared data) and
sent with storescu too, except the unreadable instance: storescu will not send a file it cannot
parse, so that one goes through pynetdicom with deliberately broken bytes (a fault a real
sender produces through corruption in transit or on its disk, which no well-behaved peer emits).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from fhir.resources.R4B.bundle import Bundle
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from tests.support.external import require_tool
from tests.support.service import QUIET_SECONDS, RunningService
from tests.support.planimetry import contour_areas
from tests.support.studies import copy_study
from tests.support.sr_groups import lesion_groups

pytestmark = pytest.mark.external



@pytest.fixture(scope="module")
def service(tmp_path_factory, data_dir):
    require_tool("storescu")
    running = RunningService(tmp_path_factory.mktemp("e2e") / "var", quiet_seconds=QUIET_SECONDS)
    yield running
    running.stop()


def _outputs(service: RunningService) -> tuple[list[Path], list[Path]]:
    outbox = service.var_dir / "outbox"
    return sorted(outbox.glob("*.dcm")), sorted(outbox.glob("*.json"))


def test_sts019_goes_through_the_whole_service(service, sts019):
    sent = service.storescu(sts019)
    assert sent.returncode == 0, sent.stderr
    study_uid = pydicom.dcmread(sts019 / "mask" / "RS.dcm").StudyInstanceUID
    state, detail = service.wait_for(study_uid)
    assert state == "done", detail
    srs, bundles = _outputs(service)
    assert len(srs) == 1 and len(bundles) == 1

    sr = hd.sr.srread(srs[0])
    assert sr.StudyInstanceUID == study_uid
    groups = lesion_groups(sr.content)
    assert len(groups) == 1
    volume = next(m for m in groups[0].get_measurements() if m.name.meaning == "Volume")
    assert volume.unit.value == "mL"
    # Independent check: the planimetric volume of the RTSTRUCT polygons (shoelace area x slice
    # spacing), within the rasterisation bound of their outlines (see test_rtstruct).
    rtstruct = pydicom.dcmread(sts019 / "mask" / "RS.dcm")
    ct0 = pydicom.dcmread(next((sts019 / "image").iterdir()), stop_before_pixels=True)
    spacing = 3.27
    planimetry = contour_areas(rtstruct, float(ct0.PixelSpacing[0]))
    expected_ml = sum(a for a, _ in planimetry.values()) * spacing / 1000
    bound_ml = sum(b for _, b in planimetry.values()) * spacing / 1000
    assert abs(volume.value - expected_ml) <= bound_ml

    dciodvfy = subprocess.run([require_tool("dciodvfy"), str(srs[0])], capture_output=True, text=True)
    errors = [line for line in (dciodvfy.stdout + dciodvfy.stderr).splitlines() if line.startswith("Error")]
    assert errors == []

    bundle = Bundle.model_validate_json(bundles[0].read_text())
    observations = [e.resource for e in bundle.entry if e.resource.get_resource_type() == "Observation"]
    assert len(observations) >= 2  # one lesion + the patient level
    patient_id = ct0.PatientID
    for observation in observations:
        assert observation.status == "preliminary"  # serve's default: no one has verified them (docs/fhir.md)
        assert patient_id in observation.subject.reference or (
            observation.subject.identifier and observation.subject.identifier.value == patient_id)
        derived = json.dumps([r.model_dump(mode="json") for r in observation.derivedFrom or []])
        assert study_uid in derived


def test_sending_the_same_study_again_changes_nothing(service, sts019):
    srs_before, bundles_before = _outputs(service)
    sr_uid = pydicom.dcmread(srs_before[0]).SOPInstanceUID
    completed_before = service.metrics()[("rcds_studies_completed_total", ())]
    assert service.storescu(sts019).returncode == 0
    time.sleep(6)  # longer than the quiet period: a re-processing would have started
    srs, bundles = _outputs(service)
    assert (srs, bundles) == (srs_before, bundles_before)
    assert pydicom.dcmread(srs[0]).SOPInstanceUID == sr_uid
    assert service.metrics()[("rcds_studies_completed_total", ())] == completed_before


def test_a_corrected_rtstruct_gives_a_new_sr_that_references_the_first(service, sts019, tmp_path):
    (first_path,) = _outputs(service)[0]
    first = pydicom.dcmread(first_path)
    corrected = pydicom.dcmread(sts019 / "mask" / "RS.dcm")
    corrected.SOPInstanceUID = corrected.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    corrected.StructureSetLabel = "corrected"
    (tmp_path / "mask").mkdir()
    corrected.save_as(tmp_path / "mask" / "RS.dcm")
    assert service.storescu(tmp_path / "mask").returncode == 0
    state, detail = service.wait_for(first.StudyInstanceUID, states=("done",))
    deadline = time.monotonic() + 120
    while len(_outputs(service)[0]) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    (second_path,) = [p for p in _outputs(service)[0] if p != first_path]
    second = pydicom.dcmread(second_path)
    (reference,) = second.PredecessorDocumentsSequence
    assert reference.StudyInstanceUID == first.StudyInstanceUID == second.StudyInstanceUID
    assert reference.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert second.CurrentRequestedProcedureEvidenceSequence  # the evidence names the corrected RTSTRUCT
    evidence = {item.ReferencedSOPInstanceUID
                for study in second.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence for item in series.ReferencedSOPSequence}
    assert corrected.SOPInstanceUID in evidence



def test_ct_with_a_missing_slice_fails_that_study_with_a_clear_error(service, sts019, tmp_path):
    study_uid = copy_study(sts019, tmp_path / "gap", drop_slice=20)
    assert service.storescu(tmp_path / "gap").returncode == 0
    state, detail = service.wait_for(study_uid)
    assert state == "failed" and "missing" in detail.lower()


def test_rtstruct_in_another_frame_of_reference_fails_that_study(service, sts019, tmp_path):
    study_uid = copy_study(sts019, tmp_path / "for", new_frame=True)
    assert service.storescu(tmp_path / "for").returncode == 0
    state, detail = service.wait_for(study_uid)
    assert state == "failed" and "Frame of Reference" in detail


def test_truncated_instance_is_refused_its_study_fails_and_service_keeps_serving(service, sts019, tmp_path):
    """A slice whose pixel data is cut short is refused at C-STORE (the sender keeps it); the
    rest of its study, now missing that slice, fails naming the gap; the next study is scored."""
    failed = ("rcds_studies_failed_total", (("kind", "input"),))
    failed_before = service.metrics().get(failed, 0.0)
    study_uid = copy_study(sts019, tmp_path / "bad")
    broken = pydicom.dcmread(sorted((tmp_path / "bad" / "image").iterdir())[10])
    broken.PixelData = broken.PixelData[:1001]  # odd, truncated: cannot form the declared image
    ae = AE(ae_title="BROKEN_PEER")
    ae.add_requested_context(CTImageStorage)
    association = ae.associate("127.0.0.1", service.dicom_port, ae_title="RADIOMICS_CDS")
    assert association.is_established
    status = association.send_c_store(broken)
    association.release()
    assert status.Status == 0xC000 and "PixelData has" in status.ErrorComment
    (sorted((tmp_path / "bad" / "image").iterdir())[10]).unlink()
    assert service.storescu(tmp_path / "bad").returncode == 0
    state, detail = service.wait_for(study_uid)
    assert state == "failed" and "missing slices" in detail

    # ... and a good study after all these failures is still scored
    good_uid = copy_study(sts019, tmp_path / "good")
    assert service.storescu(tmp_path / "good").returncode == 0
    assert service.wait_for(good_uid)[0] == "done"
    assert service.metrics()[failed] == failed_before + 1
    log = service.read_log()
    patient_id = str(pydicom.dcmread(sts019 / "mask" / "RS.dcm").PatientID)
    assert patient_id not in log


def test_serve_stops_with_an_error_when_its_scorer_dies(tmp_path):
    """A supervisor (Kubernetes, systemd) can only restart what exits."""
    running = RunningService(tmp_path / "var", quiet_seconds=QUIET_SECONDS)
    try:
        os.kill(running.scorer_child(), 9)
        assert running.process.wait(timeout=60) == 1
        assert "the scoring core exited" in running.read_log()
    finally:
        if running.process.poll() is None:
            running.stop()


def test_state_survives_a_restart_and_rtstruct_may_come_after_the_ct(sts019, tmp_path):
    """CT arrives, the service is stopped before any contours came; after a restart on the same
    var directory the RTSTRUCT arrives and the study is scored from the spooled CT."""
    study_uid = copy_study(sts019, tmp_path / "study")
    first = RunningService(tmp_path / "var", quiet_seconds=QUIET_SECONDS)
    try:
        assert first.storescu(tmp_path / "study" / "image").returncode == 0
        time.sleep(4)  # past the quiet period: without contours the study must keep waiting
        assert first.status()[study_uid][0] == "receiving"
    finally:
        first.stop()
    second = RunningService(tmp_path / "var", quiet_seconds=QUIET_SECONDS)
    try:
        assert second.storescu(tmp_path / "study" / "mask").returncode == 0
        state, detail = second.wait_for(study_uid)
        assert state == "done", detail
        assert second.metrics()[("rcds_instances_received_total", (("kind", "rtstruct"),))] == 1.0
        assert second.metrics()[("rcds_instances_received_total", (("kind", "ct"),))] == 0.0  # exported at 0
    finally:
        second.stop()
