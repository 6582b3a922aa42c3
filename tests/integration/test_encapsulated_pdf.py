"""The tumour-board summary's Encapsulated PDF against independent DICOM tools and a real PACS.

The PDFs encapsulated here are made by Pillow's PDF writer (a real PDF producer that shares
nothing with our code), one of even and one of odd length, since OB values are padded to even
length and the padding must not reach the PDF a reader gets back. Checks: dicom3tools' dciodvfy
finds no error in the IOD; dcmtk's dcm2pdf gives back the very bytes; dcmtk's pdf2dcm, an
independent producer, carries the same EncapsulatedDocument; Orthanc, sent the file by the
PACS destination's C-STORE, files it in the study of the SR and serves the same PDF back.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pydicom
import pytest
from PIL import Image

from service.config import Config
from service.model import StudyResult
from service.outputs.destinations import PacsByCStore
from service.outputs.encapsulated_pdf import ENCAPSULATED_PDF_STORAGE, SERIES_NUMBER, build_encapsulated_pdf
from tests.support.external import require_tool
from tests.support.orthanc import Orthanc, find_orthanc
from tests.support.written_outputs import write_encapsulated_pdf
from tests.support.processes import free_port
from tests.support.synthetic_results import make_study_result

pytestmark = [pytest.mark.external, pytest.mark.filterwarnings("ignore:The value length")]  # STS StudyID: 17 chars
SR_UID = "2.25.1234567890"


def _pdf() -> bytes:
    """A one-page PDF from Pillow (made once: Pillow stamps its PDFs with the time)."""
    buffer = io.BytesIO()
    Image.new("RGB", (60, 40), (200, 10, 10)).save(buffer, format="PDF")
    return buffer.getvalue()


_PDF = _pdf()
PDFS = {("odd length" if len(pdf) % 2 else "even length"): pdf for pdf in (_PDF, _PDF + b"\n")}
"""The same PDF, and with a newline after %%EOF (allowed): one of each length parity."""


@pytest.fixture(scope="module")
def result() -> StudyResult:
    return make_study_result()[0]


def _encapsulate(pdf: bytes, result: StudyResult, tmp_path: Path) -> Path:
    ds = build_encapsulated_pdf(pdf, result, SR_UID)
    return write_encapsulated_pdf(ds, tmp_path / "summary.dcm")


def test_both_lengths_are_covered() -> None:
    assert sorted(PDFS) == ["even length", "odd length"]


def test_what_is_not_a_pdf_is_refused(result: StudyResult) -> None:
    with pytest.raises(ValueError, match="not a PDF"):
        build_encapsulated_pdf(b"<html>a page</html>", result, SR_UID)


@pytest.mark.parametrize("name", sorted(PDFS))
def test_dciodvfy_finds_no_error(name: str, result: StudyResult, tmp_path: Path) -> None:
    path = _encapsulate(PDFS[name], result, tmp_path)
    run = subprocess.run([require_tool("dciodvfy"), "-new", str(path)], capture_output=True, text=True)
    errors = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
    assert not errors, run.stdout + run.stderr


@pytest.mark.parametrize("name", sorted(PDFS))
def test_dcm2pdf_gives_back_the_same_bytes(name: str, result: StudyResult, tmp_path: Path) -> None:
    path = _encapsulate(PDFS[name], result, tmp_path)
    subprocess.run([require_tool("dcm2pdf"), str(path), str(tmp_path / "back.pdf")], check=True, capture_output=True)
    assert (tmp_path / "back.pdf").read_bytes() == PDFS[name]


@pytest.mark.parametrize("name", sorted(PDFS))
def test_pdf2dcm_encapsulates_the_same_document(name: str, result: StudyResult, tmp_path: Path) -> None:
    pdf = PDFS[name]
    (tmp_path / "in.pdf").write_bytes(pdf)
    subprocess.run([require_tool("pdf2dcm"), str(tmp_path / "in.pdf"), str(tmp_path / "dcmtk.dcm")],
                   check=True, capture_output=True)
    theirs = pydicom.dcmread(tmp_path / "dcmtk.dcm")
    ours = pydicom.dcmread(_encapsulate(pdf, result, tmp_path))
    assert ours.EncapsulatedDocument == theirs.EncapsulatedDocument
    assert ours.EncapsulatedDocument[:ours.EncapsulatedDocumentLength] == pdf
    assert (ours.SOPClassUID, ours.MIMETypeOfEncapsulatedDocument) == (theirs.SOPClassUID, "application/pdf")


def test_identical_inputs_give_identical_files_and_a_new_page_a_new_instance(result: StudyResult,
                                                                             tmp_path: Path) -> None:
    even, odd = PDFS["even length"], PDFS["odd length"]
    first = _encapsulate(even, result, tmp_path / "a").read_bytes()
    assert _encapsulate(even, result, tmp_path / "b").read_bytes() == first
    one, other = (pydicom.dcmread(_encapsulate(pdf, result, tmp_path / name)) for pdf, name in ((even, "c"), (odd, "d")))
    assert one.SOPInstanceUID != other.SOPInstanceUID
    assert one.SeriesInstanceUID == other.SeriesInstanceUID
    assert (one.StudyInstanceUID, one.PatientID) == (result.study.study_instance_uid, result.study.patient_id)
    assert (one.Modality, one.SeriesNumber, one.BurnedInAnnotation) == ("DOC", SERIES_NUMBER, "YES")


def test_the_pacs_destination_lands_it_in_orthanc_in_the_study(result: StudyResult, tmp_path: Path) -> None:
    find_orthanc()
    pdf = PDFS["odd length"]
    path = _encapsulate(pdf, result, tmp_path)
    sop_instance_uid = str(pydicom.dcmread(path).SOPInstanceUID)
    orthanc = Orthanc(tmp_path / "orthanc", modality_port=free_port())
    try:
        PacsByCStore("127.0.0.1", orthanc.dicom_port, orthanc.aet, Config().dicom_ae_title).send(path)
        [instance] = orthanc.post("/tools/find", {"Level": "Instance", "Query": {"SOPInstanceUID": sop_instance_uid}})
        assert orthanc.get_bytes(f"/instances/{instance}/pdf") == pdf
        tags = orthanc.get(f"/instances/{instance}/simplified-tags")
        assert tags["SOPClassUID"] == ENCAPSULATED_PDF_STORAGE
        assert orthanc.get(f"/instances/{instance}/study")["MainDicomTags"]["StudyInstanceUID"] == \
            result.study.study_instance_uid
    finally:
        orthanc.stop()
