"""The files a scored study leaves in the outbox directory, and their names.

Every artefact of one result is named after the SR's SOP Instance UID, the result's identity
in the study index; so the paths of a result can be rebuilt from that UID alone (recovery of
deliveries after a crash, the predecessor of a re-scored study). The naming lives here only:
the writers and the worker both ask this module. Destinations say which artefact they take.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path


class Artefact(StrEnum):
    """One kind of file written for each scored study."""

    SR = "sr"
    FHIR_BUNDLE = "fhir_bundle"
    SUMMARY_PDF = "summary_pdf"  # the tumour-board page
    SUMMARY_DOCUMENT = "summary_document"  # the page as a DICOM Encapsulated PDF, delivered with the SR


_SUFFIXES = {Artefact.SR: ".dcm", Artefact.FHIR_BUNDLE: ".fhir.json", Artefact.SUMMARY_PDF: ".summary.pdf",
             Artefact.SUMMARY_DOCUMENT: ".summary.dicom"}
"""The SR is the only `*.dcm`: scripts and operators that pick "the" DICOM output of a result by
that suffix keep getting the SR; the Encapsulated PDF is DICOM too, under its own suffix."""


def artefact_path(directory: Path, sr_sop_instance_uid: str, artefact: Artefact) -> Path:
    """Where `artefact` of the result identified by its SR's UID is (or will be) in `directory`."""
    return Path(directory) / f"{sr_sop_instance_uid}{_SUFFIXES[artefact]}"

