"""The tumour-board PDF as the DiagnosticReport's presentedForm, read back from the written Bundle.

The PDF is made by Pillow's PDF writer (independent of our code); the expected size and hash
follow the R4B Attachment definition (size in bytes of the data before base64; hash the base64
of its SHA-1), computed here from the PDF's bytes. The Bundle written to the test's temporary
folder also goes through the session's FHIR validator run (tests/conftest.py).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle
from PIL import Image

from service.outputs.fhir import build_bundle
from tests.support.synthetic_results import make_study_result
from tests.support.written_outputs import write_bundle

pytestmark = pytest.mark.filterwarnings("ignore:The value length")  # STS StudyID: 17 characters

SR_UID = "2.25.987654321"


def _pdf() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (30, 20), (10, 120, 10)).save(buffer, format="PDF")
    return buffer.getvalue()


def _report(path: Path) -> dict:
    bundle = json.loads(path.read_text())
    Bundle.model_validate(bundle)  # the R4B model reads it back
    [report] = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
    return report


def test_presented_form_decodes_to_the_pdf_with_its_size_and_sha1(tmp_path: Path) -> None:
    result, _ = make_study_result()
    pdf = _pdf()
    path = write_bundle(build_bundle(result, sr_sop_instance_uid=SR_UID, summary_pdf=pdf), tmp_path)
    [form] = _report(path)["presentedForm"]
    assert form["contentType"] == "application/pdf"
    assert base64.b64decode(form["data"], validate=True) == pdf
    assert form["size"] == len(pdf)
    assert base64.b64decode(form["hash"], validate=True) == hashlib.sha1(pdf).digest()
    study_date = result.study.study_date
    assert form["creation"] == f"{study_date[:4]}-{study_date[4:6]}-{study_date[6:]}"


def test_identical_inputs_give_identical_bundles_and_no_pdf_no_presented_form(tmp_path: Path) -> None:
    result, _ = make_study_result()
    pdf = _pdf()  # once: Pillow stamps its PDFs with the time
    first = write_bundle(build_bundle(result, sr_sop_instance_uid=SR_UID, summary_pdf=pdf), tmp_path / "a")
    again = write_bundle(build_bundle(result, sr_sop_instance_uid=SR_UID, summary_pdf=pdf), tmp_path / "b")
    assert first.read_bytes() == again.read_bytes()
    without = write_bundle(build_bundle(result, sr_sop_instance_uid=SR_UID), tmp_path / "c")
    assert "presentedForm" not in _report(without)
