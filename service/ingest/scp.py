"""The DICOM listener: a pynetdicom Storage SCP that loses nothing it acknowledges.

Datasets are received straight to disk (pynetdicom's STORE_RECV_CHUNKED_DATASET), so a large
instance costs a file, not memory. The EVT_C_STORE handler parses only the header, moves the
file into the spool (fsync, rename: the receiving directory is on the spool's volume), makes
its name durable and indexes it (service.ingest.group_commit: concurrent associations share the
directory fsync and the transaction), and only then returns Success (0x0000). Anything
that goes wrong before that returns a failure status, so the sender keeps its copy and retries.

Who may associate: with an allowlist of calling AE titles, any other title is rejected with
A-ASSOCIATE-RJ (rejected permanent, service user, calling AE title not recognised); beyond
`maximum_associations` concurrent associations a request is rejected (rejected transient,
service provider, local limit exceeded). With an SSLContext (service.tls) the listener speaks
TLS only. Refusals are logged with the calling AE title and the peer's address (never patient
data) and counted in rcds_associations_rejected_total by reason.

The TLS handshake runs in each connection's own thread (ListenerServer). pynetdicom's server
shakes hands in the one thread that accepts connections, where a peer that connects and sends
nothing stops every other peer from associating; and a handshake in the association's thread
would leave a failed peer holding an association slot until the ACSE timeout, so a misconfigured
modality retrying could lock out the others.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import socket
import socketserver
import sqlite3
import ssl
import threading
import time
from typing import cast
from collections.abc import Sequence
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import ALL_TRANSFER_SYNTAXES, AE, _config, evt
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # made at import time
from pynetdicom.transport import ThreadedAssociationServer

from service.dicom_limits import InstanceLimits, check_instance, read_header
from service.errors import InputError, InstanceBudgetError, UnusableInstance
from service.ingest.group_commit import GroupCommit
from service.ingest.index import InstanceRecord, StudyIndex, StudyOrder
from service.registration_object import registered_frames
from service.sop_classes import (CT_SOP_CLASSES, IMAGE_SOP_CLASSES, LABEL_MAP_SEGMENTATION, RT_STRUCTURE_SET,
                                 SEGMENTATION, SEGMENTATION_SOP_CLASSES, SPATIAL_REGISTRATION, STORAGE_SOP_CLASSES)
from service.ingest.receive import ReceiveDirectory
from service.ingest.spool import Spool
from service.dicom import frame_of_reference
from service.observability import (ASSOCIATIONS_REJECTED, INSTANCES_RECEIVED, INSTANCES_REJECTED, SHUTDOWN_POLL_SECONDS,
                                   RepeatedErrorLog)
from service.tls import describe_failure
from service.transfer_syntaxes import image_transfer_syntaxes, transfer_syntax_of

log = logging.getLogger(__name__)

_config.STORE_RECV_CHUNKED_DATASET = True
# A full disk fails every C-STORE the same way: one log line a minute says so.
STORAGE_ERRORS = RepeatedErrorLog(log)

# The largest P-DATA PDU we accept (A-ASSOCIATE-AC's maximum length): pynetdicom's default,
# 16 KiB, makes a 512 KiB CT slice 32 PDUs, each decoded in Python; 128 KiB makes it 4.
MAXIMUM_PDU_SIZE = 128 * 1024
# C-STORE failure statuses (PS3.4 Annex B.2.3)
STATUS_CANNOT_UNDERSTAND = 0xC000
STATUS_OUT_OF_RESOURCES = 0xA700
_REQUIRED = ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")
# A-ASSOCIATE-RJ (result, source, reason) -> metric label (PS3.8 9.3.4)
_REJECTION_REASONS: dict[tuple[int, int | None, int | None], str] = {
    (0x01, 0x01, 0x03): "calling_ae", (0x01, 0x01, 0x07): "called_ae", (0x02, 0x03, 0x02): "local_limit",
}


_KINDS = {RT_STRUCTURE_SET: "rtstruct", SEGMENTATION: "seg", LABEL_MAP_SEGMENTATION: "seg", SPATIAL_REGISTRATION: "reg"}


def _kind(sop_class_uid: str) -> str:
    return "ct" if sop_class_uid in CT_SOP_CLASSES else _KINDS[UID(sop_class_uid)]


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


def _check_transfer_syntax(header: Dataset) -> None:
    """An image must come in a syntax we accept (service.transfer_syntaxes), else it would be
    acknowledged and its study fail later. The presentation contexts already offer no other
    syntax for images: this is defence in depth (e.g. a context negotiated before a decoder
    went missing, or a file meta that contradicts its context). An RTSTRUCT has no pixel data."""
    if str(header.SOPClassUID) not in IMAGE_SOP_CLASSES:
        return
    syntax = transfer_syntax_of(header)
    if syntax not in image_transfer_syntaxes():
        raise UnusableInstance(f"image transfer syntax not accepted: {syntax}", reason="transfer_syntax")


def _check_registration(header: Dataset) -> None:
    """A Spatial Registration must read as the follow-up will read it, else it would be
    acknowledged and then silently unable to map its study's priors."""
    if str(header.SOPClassUID) != SPATIAL_REGISTRATION:
        return
    try:
        registered_frames(header)
    except InputError as error:
        raise UnusableInstance(str(error), reason="registration") from error


def describe_instance(header: Dataset, path: Path, received_at: float) -> InstanceRecord:
    """The index record of a received instance; UnusableInstance says what is wrong."""
    missing = [keyword for keyword in _REQUIRED if not header.get(keyword)]
    if missing:
        raise UnusableInstance(f"missing required attributes: {', '.join(missing)}")
    # UIDs become file and directory names: only valid UIDs (digits and dots, <= 64) pass.
    invalid = [keyword for keyword in _REQUIRED if not UID(str(header.get(keyword))).is_valid]
    if invalid:
        raise UnusableInstance(f"invalid UIDs: {', '.join(invalid)}")
    _check_transfer_syntax(header)
    _check_registration(header)
    sop_class = str(header.SOPClassUID)
    if sop_class == RT_STRUCTURE_SET:
        positions = _contour_positions_z(header)
    elif sop_class in SEGMENTATION_SOP_CLASSES or "PerFrameFunctionalGroupsSequence" in header:
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


def study_order(header: Dataset) -> StudyOrder:
    """Whose study this is and when, for the worker to find a patient's earlier studies. The
    patient is the identifier with its issuer, kept as a hash: the index holds no identifiers.
    Unknown (empty) without a PatientID or a StudyDate: such a study is never ordered."""
    patient_id, issuer, date, time_of_day = (str(header.get(keyword) or "").strip() for keyword in
                                             ("PatientID", "IssuerOfPatientID", "StudyDate", "StudyTime"))
    if not patient_id or not date:
        return StudyOrder("", "")
    whole, _, fraction = time_of_day.replace(":", "").partition(".")  # HHMMSS.FFFFFF, or shorter
    key = hashlib.sha256(f"{issuer}\0{patient_id}".encode()).hexdigest()
    return StudyOrder(key, date + whole.ljust(6, "0") + (f".{fraction}" if fraction else ""))


def _failure(status: int, comment: str) -> Dataset:
    response = Dataset()
    response.Status = status
    response.ErrorComment = comment[:64]  # LO: 64 characters
    return response


class StorageHandlers:
    """pynetdicom event handlers bound to one spool and index."""

    def __init__(self, spool: Spool, index: StudyIndex, receiving: ReceiveDirectory,
                 limits: InstanceLimits = InstanceLimits(), arrivals: threading.Event | None = None) -> None:
        """`arrivals`: set whenever an instance is indexed, to wake whoever assesses studies
        (the study worker) instead of leaving the news to its next poll."""
        self.spool = spool
        self.index = index
        self.indexing = GroupCommit(index)  # concurrent associations share directory fsyncs and a transaction
        self.receiving = receiving
        self.limits = limits
        self.arrivals = arrivals

    def handle_store(self, event: evt.Event) -> int | Dataset:
        """EVT_C_STORE: durable spool file and index row, then Success.

        What the header claims (frames, matrix, pixel data length, contour points) is checked
        against the file and the limits first: an instance that would cost far more than its
        size to read later is refused now, while its sender still holds it.
        """
        received_path = Path(event.dataset_path)
        write_error = self.receiving.write_error(received_path)
        if write_error is not None:  # the receiving volume is full (or failing): the sender retries
            INSTANCES_REJECTED.labels("storage_error").inc()
            STORAGE_ERRORS.log("cannot receive an instance (%s): %s", type(write_error).__name__, write_error)
            return _failure(STATUS_OUT_OF_RESOURCES, "out of storage space receiving the instance")
        try:
            header, pixel_data = read_header(received_path)
            check_instance(header, pixel_data, self.limits)
            record = describe_instance(header, received_path, time.time())
        except (InstanceBudgetError, UnusableInstance) as error:
            INSTANCES_REJECTED.labels(error.reason).inc()
            log.warning("refused an instance: %s", error)
            return _failure(STATUS_CANNOT_UNDERSTAND, str(error))
        except Exception as error:  # pydicom raises many types for damaged files
            INSTANCES_REJECTED.labels("unreadable").inc()
            log.warning("refused an unreadable instance (%s)", type(error).__name__)
            return _failure(STATUS_CANNOT_UNDERSTAND, f"cannot parse dataset: {type(error).__name__}")
        try:
            stored = self.spool.move_in(record.study_instance_uid, record.sop_instance_uid, received_path)
            is_new = self.indexing.add_instance(dataclasses.replace(record, path=stored), study_order(header))
        except (OSError, sqlite3.Error) as error:  # disk full, permissions, index locked or full
            INSTANCES_REJECTED.labels("storage_error").inc()
            STORAGE_ERRORS.log("cannot store an instance (%s): %s", type(error).__name__, error)
            return _failure(STATUS_OUT_OF_RESOURCES, "cannot store the instance")
        INSTANCES_RECEIVED.labels(_kind(record.sop_class_uid)).inc()
        log.debug("stored instance (%s, new=%s)", _kind(record.sop_class_uid), is_new)
        if self.arrivals is not None:
            self.arrivals.set()
        return 0x0000

    @staticmethod
    def handle_echo(event: evt.Event) -> int:
        """EVT_C_ECHO: Verification answers Success while we are up."""
        return 0x0000


def log_rejection(event: evt.Event) -> None:
    """EVT_ACSE_SENT: an A-ASSOCIATE-RJ we send is logged and counted (allowlist, limit, ...)."""
    primitive = event.primitive  # type: ignore[attr-defined]  # set from the event's data by pynetdicom
    if not isinstance(primitive, A_ASSOCIATE) or primitive.result not in (0x01, 0x02):
        return
    reason = _REJECTION_REASONS.get((primitive.result, primitive.result_source, primitive.diagnostic), "other")
    ASSOCIATIONS_REJECTED.labels(reason).inc()
    requestor = event.assoc.requestor
    log.warning("rejected an association from calling AE %r at %s:%s: %s (%s)", requestor.ae_title,
                requestor.address, requestor.port, primitive.reason_str, primitive.result_str)


def log_tls_failure(peer: str, error: BaseException) -> None:
    """A peer's TLS handshake failed (plain DICOM on the TLS port, untrusted or no certificate)."""
    ASSOCIATIONS_REJECTED.labels("tls").inc()
    log.warning("TLS handshake with %s failed: %s", peer, describe_failure(error))


class ListenerServer(ThreadedAssociationServer):
    """pynetdicom's threaded association server with the TLS handshake moved out of the
    accepting thread: each connection shakes hands in its own thread, within the AE's ACSE
    timeout, and one whose handshake fails is logged, counted and closed before any association
    exists. Without an SSLContext it serves as pynetdicom's server does."""

    daemon_threads = True  # a handshake still waiting for its peer does not hold up the exit

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None  # bound and listening while serving
        connection, address = self.socket.accept()
        if self.ssl_context is not None:
            connection = self.ssl_context.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
        return connection, address

    def process_request_thread(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: tuple[str, int] | str
    ) -> None:
        if isinstance(request, ssl.SSLSocket) and not self._handshake(request, client_address):
            self.shutdown_request(request)
            return
        super().process_request_thread(request, client_address)

    def _handshake(self, connection: ssl.SSLSocket, address: tuple[str, int] | str) -> bool:
        blocking = connection.gettimeout()
        connection.settimeout(self.ae.acse_timeout)
        try:
            connection.do_handshake()
        except OSError as error:  # ssl.SSLError, resets and timeouts alike
            log_tls_failure(f"{address[0]}:{address[1]}", error)
            return False
        connection.settimeout(blocking)
        return True

    def shutdown(self) -> None:
        """Stop accepting and close the socket (pynetdicom's own shutdown expects to have been
        started by AE.start_server, which cannot choose the server class)."""
        socketserver.BaseServer.shutdown(self)
        self.server_close()


def build_ae(ae_title: str, max_associations: int, allowed_calling_aes: Sequence[str] = ()) -> AE:
    """An AE accepting our storage SOP classes from the allowed calling AE titles (empty: any),
    up to `max_associations` at a time. Images only in the lossless syntaxes we can decode
    (service.transfer_syntaxes): a sender of anything else gets no accepted context, so it
    converts or reports, rather than getting Success for a study that then fails. RTSTRUCT and
    Spatial Registration in every syntax pynetdicom knows."""
    ae = AE(ae_title=ae_title)
    ae.require_called_aet = True  # a request for another AE title was meant for another system
    ae.maximum_associations = max_associations
    ae.maximum_pdu_size = MAXIMUM_PDU_SIZE
    ae.require_calling_aet = list(allowed_calling_aes)
    for sop_class in sorted(STORAGE_SOP_CLASSES):
        syntaxes = image_transfer_syntaxes() if sop_class in IMAGE_SOP_CLASSES else ALL_TRANSFER_SYNTAXES
        ae.add_supported_context(sop_class, list(syntaxes))
    ae.add_supported_context(Verification)
    return ae


def start_listener(ae: AE, host: str, port: int, handlers: StorageHandlers,
                   ssl_context: ssl.SSLContext | None = None) -> ListenerServer:
    """Start the SCP in the background (TLS only with `ssl_context`); returns the server (call
    .shutdown()). Like AE.start_server(block=False), with our server class (AE.make_server)."""
    server = cast(ListenerServer, ae.make_server(
        (host, port), ssl_context=ssl_context, server_class=ListenerServer,
        evt_handlers=[(evt.EVT_C_STORE, handlers.handle_store), (evt.EVT_C_ECHO, handlers.handle_echo),
                      (evt.EVT_ACSE_SENT, log_rejection), (evt.EVT_CONN_CLOSE, handlers.receiving.discard_unfinished)],
    ))  # make_server builds the server_class it is given
    threading.Thread(target=server.serve_forever, args=(SHUTDOWN_POLL_SECONDS,), name="dicom-listener",
                     daemon=True).start()
    return server
