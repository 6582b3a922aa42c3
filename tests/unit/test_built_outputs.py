"""A study's outputs in the order they are built (service.outputs.built): the SR first, named by
the identity derived before it was built, then the page, its Encapsulated PDF and the Bundle,
all naming that SR; a caller that stops after the SR gives up the page still rendering."""

from __future__ import annotations

import io
import json

import pydicom
import pypdf

from service.outputs.artefacts import Artefact
from service.outputs.built import study_outputs
from service.outputs.sr import sr_identity
from service.outputs.summary_input import SummaryInput
from service.outputs.warm_up_sample import sample


def _saved(save) -> bytes:  # type: ignore[no-untyped-def]
    stream = io.BytesIO()
    save(stream)
    return stream.getvalue()


def test_the_outputs_come_sr_first_and_all_name_the_derived_sr() -> None:
    result, evidence, image = sample()
    identity = sr_identity(result)
    built = list(study_outputs(result, evidence, identity, key_images=[image]))
    assert [(b.artefact, b.stage) for b in built] == [
        (Artefact.SR, "sr"), (Artefact.SUMMARY_PDF, "page"), (Artefact.SUMMARY_DOCUMENT, "encapsulated_pdf"),
        (Artefact.FHIR_BUNDLE, "fhir")]
    sr, pdf, document, bundle = (_saved(b.save) for b in built)
    sr_dataset = pydicom.dcmread(io.BytesIO(sr))
    assert (sr_dataset.SOPInstanceUID, sr_dataset.SeriesInstanceUID) == (identity.sop_instance_uid,
                                                                         identity.series_instance_uid)
    page_text = "".join(pypdf.PdfReader(io.BytesIO(pdf)).pages[0].extract_text().split())
    assert f"SRSOPInstanceUID:{identity.sop_instance_uid}" in page_text  # the page names its SR
    document_dataset = pydicom.dcmread(io.BytesIO(document))
    assert document_dataset.EncapsulatedDocument[:document_dataset.EncapsulatedDocumentLength] == pdf
    assert identity.sop_instance_uid in [item.ReferencedSOPInstanceUID
                                         for item in document_dataset.SourceInstanceSequence]
    assert json.loads(bundle)["identifier"] == {"system": "urn:dicom:uid", "value": f"urn:oid:{identity.sop_instance_uid}"}


def test_the_bundle_claims_no_verification_the_sr_does_not() -> None:
    """The SR is UNVERIFIED (no one signed it); FHIR's `final` means verified by an authorized
    person, so by default the report and every Observation are `preliminary`."""
    result, evidence, image = sample()
    sr, _, _, bundle = (_saved(b.save) for b in study_outputs(result, evidence, sr_identity(result), key_images=[image]))
    assert pydicom.dcmread(io.BytesIO(sr)).VerificationFlag == "UNVERIFIED"
    statuses = {entry["resource"]["status"] for entry in json.loads(bundle)["entry"]
                if entry["resource"]["resourceType"] in ("Observation", "DiagnosticReport")}
    assert statuses == {"preliminary"}


class _RecordingPages:
    """Stands in for the page renderer's process (service.outputs.page_process, tested there)
    to see what the outputs ask of it: a rendering, then its result or its cancellation."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def render(self, page: SummaryInput) -> _RecordingPages:
        self.asked.append("render")
        return self

    def result(self) -> bytes:
        self.asked.append("result")
        return b"%PDF- made up"

    def cancel(self) -> None:
        self.asked.append("cancel")


def test_a_caller_stopping_after_the_sr_cancels_the_page_still_rendering() -> None:
    result, evidence, image = sample()
    pages = _RecordingPages()
    outputs = study_outputs(result, evidence, sr_identity(result), key_images=[image], pages=pages)  # type: ignore[arg-type]
    assert next(outputs).artefact is Artefact.SR
    assert pages.asked == ["render"]  # rendering while the SR was built
    outputs.close()  # as the pipeline's closing() does when writing the SR failed
    assert pages.asked == ["render", "cancel"]


def test_the_page_is_taken_from_the_renderer_once_the_sr_is_out() -> None:
    result, evidence, image = sample()
    pages = _RecordingPages()
    built = list(study_outputs(result, evidence, sr_identity(result), key_images=[image], pages=pages))  # type: ignore[arg-type]
    assert _saved(built[1].save) == b"%PDF- made up"
    assert pages.asked == ["render", "result", "cancel"]  # the cancel of a rendered page does nothing
