"""A study's outputs, built one after another in the order that lets its page render meanwhile.

The SR, the tumour-board page (PDF), the page as an Encapsulated PDF for the PACS and the FHIR
Bundle (with the page as its presentedForm). The page needs nothing of the SR but its UID,
derived before the SR is built (service.outputs.sr.sr_identity), so with a page renderer
(service.outputs.page_process) its process renders while the SR is built here and while the
caller writes it.

One sequence for the two that build outputs: the pipeline writes each output durably as it
comes, and the start-up warm-up (service.outputs.warm_up) serialises each into memory, so a
builder added here is warmed too.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from pydicom import Dataset

from service.comparison import Comparison
from service.model import StudyResult
from service.outputs.artefacts import Artefact
from service.outputs.encapsulated_pdf import build_encapsulated_pdf
from service.outputs.fhir import FhirSettings, build_bundle, bundle_json, bundle_withheld
from service.outputs.key_images import KeyImage
from service.outputs.page_process import PageRenderer, render_page
from service.outputs.sr import SrIdentity, build_measurement_report
from service.outputs.summary_input import summary_input


@dataclass(frozen=True)
class BuiltOutput:
    """One output, built: `save` writes its bytes to a stream (a file, or memory)."""

    artefact: Artefact
    stage: str  # what its building counts as in rcds_study_stage_seconds
    save: Callable[[BinaryIO], object]


def study_outputs(result: StudyResult, evidence: Sequence[Dataset], identity: SrIdentity, *,
                  fhir: FhirSettings = FhirSettings(),
                  predecessor: Dataset | None = None,
                  comparison: Comparison = Comparison(), key_images: Sequence[KeyImage] = (),
                  pages: PageRenderer | None = None) -> Generator[BuiltOutput, None, None]:
    """The outputs of a scored study, SR first, each built when the caller asks for it; no
    Bundle for a study without PatientID (service.outputs.fhir.bundle_withheld).

    `identity`: sr_identity(result, comparison). `evidence`, `predecessor`, `comparison`: as
    build_measurement_report takes them. `key_images`: the lesions' key slices for the page.
    `pages`: renders the page in its own process from the start (else here, after the SR). A
    caller that stops early (its SR write failed) closes the iterator: the page still queued
    is then cancelled, so it does not hold the renderer for the next study.
    """
    sr_uid = identity.sop_instance_uid
    page = summary_input(result, sr_sop_instance_uid=sr_uid, comparison=comparison, key_images=key_images)
    pending = pages.render(page) if pages is not None else None
    try:
        sr = build_measurement_report(result, evidence, predecessor=predecessor, comparison=comparison,
                                      identity=identity)
        yield BuiltOutput(Artefact.SR, "sr", lambda stream: sr.save_as(stream, enforce_file_format=True))
        pdf = pending.result() if pending is not None else render_page(page)
    finally:
        if pending is not None:
            pending.cancel()  # a no-op once rendered
    yield BuiltOutput(Artefact.SUMMARY_PDF, "page", lambda stream: stream.write(pdf))
    document = build_encapsulated_pdf(pdf, result, sr_uid)
    yield BuiltOutput(Artefact.SUMMARY_DOCUMENT, "encapsulated_pdf",
                      lambda stream: document.save_as(stream, enforce_file_format=True))
    if bundle_withheld(result.study) is not None:  # the study's warnings say why (service.pipeline)
        return
    bundle = build_bundle(result, sr_sop_instance_uid=sr_uid, settings=fhir, comparison=comparison,
                          summary_pdf=pdf)
    yield BuiltOutput(Artefact.FHIR_BUNDLE, "fhir",
                      lambda stream: stream.write(bundle_json(bundle)))
