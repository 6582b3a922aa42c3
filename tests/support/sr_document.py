"""Our SR document against the one highdicom's own Comprehensive3DSR constructor builds from the
same content (service.outputs.sr._ReportDocument skips its copy of the content tree): the same
bytes once the creation times, which each build stamps with its own clock, are set equal."""

from __future__ import annotations

import io
from collections.abc import Callable

import highdicom as hd
import pytest
from pydicom import Dataset

from service.outputs import sr as sr_module

_CLOCK = "20260101120000.000000"


def assert_same_as_highdicoms_build(build: Callable[[], Dataset], monkeypatch: pytest.MonkeyPatch) -> None:
    """`build` (a call of build_measurement_report) twice: as it is, and with highdicom's class,
    whose walk of the content also checks that every instance referenced is evidence."""
    ours = build()
    with monkeypatch.context() as patch:
        patch.setattr(sr_module, "_ReportDocument", hd.sr.Comprehensive3DSR)
        theirs = build()
    assert type(theirs) is hd.sr.Comprehensive3DSR and type(ours) is not hd.sr.Comprehensive3DSR
    assert document_bytes(ours) == document_bytes(theirs)


def document_bytes(document: Dataset) -> bytes:
    """The document as written, its creation times set to one clock (each build stamps its own)."""
    document.InstanceCreationDate, document.InstanceCreationTime = _CLOCK[:8], _CLOCK[8:]
    document.ContentDate, document.ContentTime = _CLOCK[:8], _CLOCK[8:]
    for equipment in document.get("ContributingEquipmentSequence", []):
        equipment.ContributionDateTime = _CLOCK
    stream = io.BytesIO()
    document.save_as(stream, enforce_file_format=True)
    return stream.getvalue()
