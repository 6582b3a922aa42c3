"""The DICOM listener: a pynetdicom Storage SCP that loses nothing it acknowledges.

Datasets are received straight to disk (pynetdicom's STORE_RECV_CHUNKED_DATASET), so a large
instance costs a file, not memory. The EVT_C_STORE handler parses only the header, copies the
file into the spool durably and indexes it, and only then returns Success (0x0000). Anything
that goes wrong before that returns a failure status, so the sender keeps its copy and retries.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import time
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import ALL_TRANSFER_SYNTAXES, AE, _config, evt
from pynetdicom.sop_class import Verification
from pynetdicom.transport import ThreadedAssociationServer

from service.ingest.index import InstanceRecord, StudyIndex
from service.sop_classes import CT_SOP_CLASSES, RT_STRUCTURE_SET, SEGMENTATION, STORAGE_SOP_CLASSES
from service.ingest.spool import Spool
from service.imaging.references import frame_of_reference
from service.observability import INSTANCES_RECEIVED, INSTANCES_REJECTED

log = logging.getLogger(__name__)

_config.STORE_RECV_CHUNKED_DATASET = True

# C-STORE failure statuses (PS3.4 Annex B.2.3)
STATUS_CANNOT_UNDERSTAND = 0xC000
STATUS_OUT_OF_RESOURCES = 0xA700
_REQUIRED = ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")


class UnusableInstance(ValueError):
    """The instance cannot be indexed; the C-STORE is refused, so nothing is lost."""


def _kind(sop_class_uid: str) -> str:
    if sop_class_uid in CT_SOP_CLASSES:
        return "ct"
    return "rtstruct" if sop_class_uid == RT_STRUCTURE_SET else "seg"


def _frame_positions_z(header: Dataset) -> list[float]:
    """z of each frame's ImagePositionPatient (Enhanced CT and SEG functional groups)."""
    positions = []
    for frame in header.get("PerFrameFunctionalGroupsSequence") or []:
        plane = frame.get("PlanePositionSequence")
        if plane:
            positions.append(float(plane[0].ImagePositionPatient[2]))
    return positions


def _contour_positions_z(header: Dataset) -> list[float]:
    """z of every contour plane of an RTSTRUCT (ContourData is x, y, z triplets)."""
    planes = {
        round(float(contour.ContourData[2]), 3)
        for roi in header.get("ROIContourSequence") or []
        for contour in roi.get("ContourSequence") or []
        if contour.get("ContourData")
    }
    return sorted(planes)


def describe_instance(header: Dataset, path: Path, received_at: float) -> InstanceRecord:
    """The index record of a received instance; UnusableInstance says what is missing."""
    missing = [keyword for keyword in _REQUIRED if not header.get(keyword)]
    if missing:
        raise UnusableInstance(f"missing required attributes: {', '.join(missing)}")
    # UIDs become file and directory names: only valid UIDs (digits and dots, <= 64) pass.
    invalid = [keyword for keyword in _REQUIRED if not UID(str(header.get(keyword))).is_valid]
    if invalid:
        raise UnusableInstance(f"invalid UIDs: {', '.join(invalid)}")
    sop_class = str(header.SOPClassUID)
    if sop_class == RT_STRUCTURE_SET:
        positions = _contour_positions_z(header)
    elif sop_class == SEGMENTATION or "PerFrameFunctionalGroupsSequence" in header:
        positions = _frame_positions_z(header)
    else:
        position = header.get("ImagePositionPatient")
        positions = [float(position[2])] if position else []
    return InstanceRecord(
        sop_instance_uid=str(header.SOPInstanceUID), sop_class_uid=sop_class,
        study_instance_uid=str(header.StudyInstanceUID), series_instance_uid=str(header.SeriesInstanceUID),
        modality=str(header.get("Modality", "")), frame_of_reference_uid=frame_of_reference(header),
        positions=tuple(positions), path=path, received_at=received_at,
    )


def _failure(status: int, comment: str) -> Dataset:
    response = Dataset()
    response.Status = status
    response.ErrorComment = comment[:64]  # LO: 64 characters
    return response


class StorageHandlers:
    """pynetdicom event handlers bound to one spool and index."""

    def __init__(self, spool: Spool, index: StudyIndex) -> None:
        self.spool = spool
        self.index = index

    def handle_store(self, event: evt.Event) -> int | Dataset:
        """EVT_C_STORE: durable spool + index, then Success."""
        received_path = Path(event.dataset_path)
        try:
            header = pydicom.dcmread(received_path, stop_before_pixels=True, force=False)
            record = describe_instance(header, received_path, time.time())
        except UnusableInstance as error:
            INSTANCES_REJECTED.labels("missing_attributes").inc()
            log.warning("refused an instance: %s", error)
            return _failure(STATUS_CANNOT_UNDERSTAND, str(error))
        except Exception as error:  # pydicom raises many types for damaged files
            INSTANCES_REJECTED.labels("unreadable").inc()
            log.warning("refused an unreadable instance (%s)", type(error).__name__)
            return _failure(STATUS_CANNOT_UNDERSTAND, f"cannot parse dataset: {type(error).__name__}")
        try:
            with received_path.open("rb") as source:
                stored = self.spool.store(record.study_instance_uid, record.sop_instance_uid, source)
            is_new = self.index.add_instance(dataclasses.replace(record, path=stored))
        except (OSError, sqlite3.Error) as error:  # disk full, permissions, index locked or full
            INSTANCES_REJECTED.labels("storage_error").inc()
            log.error("cannot store an instance (%s): %s", type(error).__name__, error)
            return _failure(STATUS_OUT_OF_RESOURCES, "cannot store the instance")
        INSTANCES_RECEIVED.labels(_kind(record.sop_class_uid)).inc()
        log.debug("stored instance (%s, new=%s)", _kind(record.sop_class_uid), is_new)
        return 0x0000

    @staticmethod
    def handle_echo(event: evt.Event) -> int:
        """EVT_C_ECHO: Verification answers Success while we are up."""
        return 0x0000


def build_ae(ae_title: str, max_associations: int) -> AE:
    """An AE accepting our storage SOP classes (all transfer syntaxes pynetdicom knows)."""
    ae = AE(ae_title=ae_title)
    ae.maximum_associations = max_associations
    for sop_class in sorted(STORAGE_SOP_CLASSES):
        ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    return ae


def start_listener(ae: AE, host: str, port: int, handlers: StorageHandlers) -> ThreadedAssociationServer:
    """Start the SCP in the background; returns pynetdicom's server (call .shutdown())."""
    return ae.start_server(
        (host, port), block=False,
        evt_handlers=[(evt.EVT_C_STORE, handlers.handle_store), (evt.EVT_C_ECHO, handlers.handle_echo)],
    )
