"""Outputs written to files the way the outbox names them, for tests that build one output on
its own. The service writes a study's outputs through service.outputs.built and the pipeline
(durably, each as it is built); a test needs only the file."""

from __future__ import annotations

from pathlib import Path

from fhir.resources.R4B.bundle import Bundle
from pydicom import Dataset

from service.outputs.artefacts import Artefact, artefact_path
from service.outputs.fhir import bundle_json


def write_sr(sr: Dataset, outdir: Path) -> Path:
    """`<SOP Instance UID>.dcm` in `outdir`."""
    return _saved(sr, artefact_path(outdir, str(sr.SOPInstanceUID), Artefact.SR))


def write_encapsulated_pdf(document: Dataset, target: Path) -> Path:
    return _saved(document, target)


def write_bundle(bundle: Bundle, outdir: Path) -> Path:
    """`<SR SOP Instance UID>.fhir.json` in `outdir`: the Bundle's identifier is its SR's UID."""
    assert bundle.identifier is not None
    target = artefact_path(outdir, str(bundle.identifier.value).removeprefix("urn:oid:"), Artefact.FHIR_BUNDLE)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(bundle_json(bundle))
    return target


def _saved(dataset: Dataset, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(target, enforce_file_format=True)
    return target
