"""Priors over DIMSE: C-FIND study, series and image level, then C-GET of each SR instance.

C-GET, never C-MOVE: C-GET returns the SR on the association this replica opened, whereas a
C-MOVE makes PACS connect to our AE title's registered address, which behind a Kubernetes
Service may be another pod, where the SR would enter the spool as if it were a study to score
(docs/architecture.md, "Priors from PACS"). For C-GET the SCU proposes the Comprehensive 3D SR storage context with the
SCP role (role selection) and stores the sub-operations in its EVT_C_STORE handler.

A series (a prior CT, a study to score again) is a C-GET at series level, or at image level for
one instance, proposing the listener's storage classes (CT, Enhanced CT, RT Structure Set, both
Segmentation classes, Spatial Registration) with the SCP role. Each instance goes straight to the retrieval's Landing: the file pynetdicom received it
into is copied when it receives to disk (the listener's setting, process-wide), else its
encoded bytes are written, never decoded. An instance the Landing refuses (a limit) ends the
retrieval: the association is aborted rather than the rest of a large series received for
nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO

from pydicom.dataset import Dataset
from pydicom.uid import UID, Comprehensive3DSRStorage
from pynetdicom import AE, DEFAULT_TRANSFER_SYNTAXES, _config, build_role, evt
from pynetdicom.association import Association

from service.errors import ConfigError, PriorSourceError
from service.outputs.codes import MANUFACTURER
from service.priors.retrieve import Landing, SeriesRequest
from service.priors.source import PatientQuery, SrLocation
from service.sop_classes import IMAGE_SOP_CLASSES, STORAGE_SOP_CLASSES
from service.tls import ClientTls, describe_failure
from service.transfer_syntaxes import image_transfer_syntaxes

# pynetdicom logs every request and response identifier at INFO; ours hold the patient ID.
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False

StudyRootQueryRetrieveInformationModelFind = UID("1.2.840.10008.5.1.4.1.2.2.1")
StudyRootQueryRetrieveInformationModelGet = UID("1.2.840.10008.5.1.4.1.2.2.3")
_PENDING = (0xFF00, 0xFF01)
_SUCCESS = 0x0000
_REFUSED = 0xA700  # C-STORE: Refused, Out of Resources (PS3.4 B.2.3)


class DimseProvider:
    """C-FIND + C-GET against `called_ae` at host:port, as `calling_ae` (ours)."""

    name = "dimse"

    def __init__(self, host: str, port: int, called_ae: str, calling_ae: str, timeout_s: float,
                 tls: ClientTls | None = None) -> None:
        self._peer = (host, port, called_ae)
        self._calling_ae = calling_ae
        self._timeout_s = timeout_s
        self._tls = tls

    def find(self, query: PatientQuery) -> list[SrLocation]:
        association = self._associate([StudyRootQueryRetrieveInformationModelFind])
        try:
            locations = []
            for study in self._find(association, _study_query(query)):
                study_uid = str(study.StudyInstanceUID)
                for series in self._find(association, _series_query(study_uid)):
                    for instance in self._find(association, _instance_query(study_uid, str(series.SeriesInstanceUID))):
                        locations.append(SrLocation(str(study.get("StudyDate", "")), str(study.get("StudyTime", "")),
                                                    study_uid, str(series.SeriesInstanceUID),
                                                    str(instance.SOPInstanceUID)))
            return sorted(locations)
        finally:
            association.release()

    def fetch(self, location: SrLocation) -> Dataset:
        received: list[Dataset] = []

        def store(event: evt.Event) -> int:
            dataset = event.dataset
            dataset.file_meta = event.file_meta
            received.append(dataset)
            return _SUCCESS

        association = self._associate([StudyRootQueryRetrieveInformationModelGet], store_handler=store,
                                      storage=[Comprehensive3DSRStorage])
        try:
            identifier = _instance_query(location.study_instance_uid, location.series_instance_uid)
            identifier.SOPInstanceUID = location.sop_instance_uid
            for status, _ in association.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet):
                _check(status, "C-GET", pending=(0xFF00,))
        finally:
            association.release()
        matching = [ds for ds in received if ds.SOPInstanceUID == location.sop_instance_uid]
        if not matching:
            raise PriorSourceError("DIMSE C-GET succeeded without returning the SR instance")
        return matching[0]

    def retrieve(self, request: SeriesRequest, landing: Landing) -> None:
        refused: list[PriorSourceError] = []

        def store(event: evt.Event) -> int:
            if refused:
                return _REFUSED
            try:
                landing.write(request, lambda stream: _copy_received(event, stream))
            except PriorSourceError as error:
                refused.append(error)
                return _REFUSED
            return _SUCCESS

        association = self._associate([StudyRootQueryRetrieveInformationModelGet], store_handler=store,
                                      storage=sorted(STORAGE_SOP_CLASSES))
        try:
            identifier = _instance_query(request.study_instance_uid, request.series_instance_uid)
            if request.sop_instance_uid is None:
                identifier.QueryRetrieveLevel = "SERIES"
                del identifier.SOPInstanceUID
            else:
                identifier.SOPInstanceUID = request.sop_instance_uid
            for status, _ in association.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet):
                if refused:
                    association.abort()
                    break
                _check(status, "C-GET", pending=(0xFF00,))
        finally:
            if association.is_established:
                association.release()
        if refused:
            raise refused[0]

    def _find(self, association: Association, identifier: Dataset) -> list[Dataset]:
        """The matches of one C-FIND, all of them: the next C-FIND on the association may only
        start once this one is complete. PriorSourceError when it fails or is refused."""
        return [match for status, match in association.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind)
                if _check(status, "C-FIND", pending=_PENDING) and match is not None]

    def _associate(self, contexts: list[UID], store_handler: Callable[[evt.Event], int] | None = None,
                   storage: Sequence[UID] = ()) -> Association:
        """An association for `contexts`; with `store_handler`, also the `storage` classes with
        the SCP role, their instances going to the handler (C-GET sub-operations)."""
        host, port, called_ae = self._peer
        ae = AE(ae_title=self._calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self._timeout_s
        for context in contexts:
            ae.add_requested_context(context)
        for sop_class in storage:
            ae.add_requested_context(sop_class, _storage_syntaxes(sop_class))
        where = f"{called_ae} at {host}:{port}"
        try:
            tls_context = self._tls.context() if self._tls is not None else None
        except ConfigError as error:  # unreadable TLS files
            raise PriorSourceError(f"DIMSE: TLS with {where} not attempted: {error}") from None
        extended: list[Any] = [build_role(sop_class, scp_role=True) for sop_class in storage] if store_handler else []
        handlers: list[Any] = [(evt.EVT_C_STORE, store_handler)] if store_handler else []
        association = ae.associate(host, port, ae_title=called_ae, ext_neg=extended, evt_handlers=handlers,
                                   tls_args=(tls_context, host) if tls_context is not None else None)
        if tls_context is not None and tls_context.failure is not None and not association.is_established:
            raise PriorSourceError(f"DIMSE: TLS with {where} failed: {describe_failure(tls_context.failure)}")
        if association.is_rejected:
            rejection = association.acceptor.primitive
            reason = rejection.reason_str if rejection is not None else "no reason given"
            raise PriorSourceError(f"DIMSE: {where} rejected the association ({reason})")
        if not association.is_established:
            raise PriorSourceError(f"DIMSE: no association with {where} (refused, unreachable or timed out)")
        if not association.accepted_contexts:
            association.release()
            raise PriorSourceError(f"DIMSE: {where} accepts none of the proposed query/retrieve classes")
        return association


def _storage_syntaxes(sop_class: UID) -> list[str]:
    """What a C-GET may send a class in: for images, the syntaxes the listener accepts (lossless,
    decodable); else (structure sets, SRs, Spatial Registrations, never pixel data) pynetdicom's
    default (uncompressed), which every SCP can send."""
    if sop_class in IMAGE_SOP_CLASSES:
        return list(image_transfer_syntaxes())
    return list(DEFAULT_TRANSFER_SYNTAXES)


def _copy_received(event: evt.Event, stream: BinaryIO) -> None:
    """A C-STORE sub-operation's instance as a DICOM file into `stream`, without decoding it."""
    if _config.STORE_RECV_CHUNKED_DATASET:
        with event.dataset_path.open("rb") as received:
            shutil.copyfileobj(received, stream, 1024 * 1024)
    else:
        stream.write(event.encoded_dataset(include_meta=True))


def _check(status: Dataset, operation: str, pending: tuple[int, ...]) -> bool:
    """True for a pending response (a match follows), False for success; else PriorSourceError."""
    code = getattr(status, "Status", None)
    if code is None:
        raise PriorSourceError(f"DIMSE: no {operation} response (connection lost or timed out)")
    if code in pending:
        return True
    if code != _SUCCESS:
        raise PriorSourceError(f"DIMSE: {operation} refused (status 0x{code:04X})")
    return False


def _study_query(query: PatientQuery) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.PatientID = query.patient_id
    if query.issuer_of_patient_id:
        identifier.IssuerOfPatientID = query.issuer_of_patient_id
    identifier.StudyDate = f"{query.earliest_date}-{query.latest_date}"
    identifier.StudyTime = ""
    identifier.ModalitiesInStudy = "SR"
    identifier.StudyInstanceUID = ""
    return identifier


def _series_query(study_instance_uid: str) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "SERIES"
    identifier.StudyInstanceUID = study_instance_uid
    identifier.Modality = "SR"
    identifier.Manufacturer = MANUFACTURER
    identifier.SeriesInstanceUID = ""
    return identifier


def _instance_query(study_instance_uid: str, series_instance_uid: str) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    identifier.StudyInstanceUID = study_instance_uid
    identifier.SeriesInstanceUID = series_instance_uid
    identifier.SOPInstanceUID = ""
    return identifier
