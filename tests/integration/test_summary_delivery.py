"""The tumour-board page through the running service: `serve` scores STS_019, delivers the SR
and the page's Encapsulated PDF to a real PACS (Orthanc, reference configuration) and writes the
Bundle whose presentedForm is the same page.

References: the study the page must land in is the SR's (read back from Orthanc); the PDF
Orthanc serves (its /pdf route, Orthanc's own decapsulation) must be the bytes of the page file
in the outbox and of the Bundle's presentedForm (base64, size and SHA-1 per R4B Attachment).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pydicom
import pytest

from tests.support.orthanc import Orthanc, find_orthanc, reference_config
from tests.support.processes import free_port, wait_until
from tests.support.service import QUIET_SECONDS, RunningService

pytestmark = pytest.mark.external
TIMEOUT_S = 240
ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"


def test_the_page_reaches_the_srs_study_in_pacs_and_the_bundle_carries_it(sts019: Path, tmp_path: Path) -> None:
    find_orthanc()
    dicom_port = free_port()
    service = RunningService(tmp_path / "var", quiet_seconds=QUIET_SECONDS, pacs_host="127.0.0.1",
                             pacs_port=dicom_port, pacs_ae_title=reference_config()["DicomAet"],
                             delivery_initial_backoff_seconds=1)
    try:
        orthanc = Orthanc(tmp_path / "orthanc", modality_port=service.dicom_port, dicom_port=dicom_port)
    except BaseException:
        service.stop()
        raise
    try:
        assert service.storescu(sts019).returncode == 0
        study_uid = str(pydicom.dcmread(next((sts019 / "image").iterdir()), stop_before_pixels=True).StudyInstanceUID)
        assert service.wait_for(study_uid, timeout_s=TIMEOUT_S)[0] == "done"
        sr_path = service.result_sr(study_uid)
        assert sr_path is not None
        uid = sr_path.name.removesuffix(".dcm")
        page = (sr_path.parent / f"{uid}.summary.pdf").read_bytes()
        document_uid = str(pydicom.dcmread(sr_path.parent / f"{uid}.summary.dicom").SOPInstanceUID)

        def in_pacs(sop_instance_uid: str) -> list[str]:
            return orthanc.post("/tools/find", {"Level": "Instance", "Query": {"SOPInstanceUID": sop_instance_uid}})

        wait_until(lambda: bool(in_pacs(uid)) and bool(in_pacs(document_uid)), TIMEOUT_S,
                   "the SR and the page to reach Orthanc")
        [sr], [document] = in_pacs(uid), in_pacs(document_uid)
        assert orthanc.get(f"/instances/{document}/simplified-tags")["SOPClassUID"] == ENCAPSULATED_PDF_STORAGE
        assert orthanc.get_bytes(f"/instances/{document}/pdf") == page
        assert orthanc.get(f"/instances/{document}/study")["ID"] == orthanc.get(f"/instances/{sr}/study")["ID"]
        assert [state for state, _, _ in service.deliveries("pacs-summary")] == ["delivered"]

        bundle = json.loads((sr_path.parent / f"{uid}.fhir.json").read_text())
        [report] = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
        [form] = report["presentedForm"]
        assert form["contentType"] == "application/pdf"
        assert base64.b64decode(form["data"], validate=True) == page and form["size"] == len(page)
        assert base64.b64decode(form["hash"], validate=True) == hashlib.sha1(page).digest()
        assert "STS_019" not in service.read_log()
    finally:
        orthanc.stop()
        service.stop()
