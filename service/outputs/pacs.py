"""C-STORE SCU: sends files to any Storage SCP (our SRs to PACS, and the `send` command).

One association carries every file; each file's presentation context is proposed from its
own SOP class and transfer syntax, so any storage object goes as it is, without re-encoding.
With `tls` (service.tls.ClientTls) the association runs over TLS: the peer's certificate is
verified, including that it names `host`; a failed handshake is a DeliveryError saying so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pydicom
from pydicom.uid import UID
from pynetdicom import AE
from pynetdicom.presentation import build_context

from service.errors import ConfigError, DeliveryError
from service.tls import ClientTls, describe_failure

log = logging.getLogger(__name__)

# pynetdicom proposes at most 128 presentation contexts per association.
_MAX_CONTEXTS = 128


@dataclass
class SendReport:
    sent: int = 0
    failed: list[str] = field(default_factory=list)  # "file name: reason"
    refused: list[str] = field(default_factory=list)  # failures no retry can fix (subset of failed)

    def refuse(self, message: str) -> None:
        self.failed.append(message)
        self.refused.append(message)


def dicom_files(paths: Sequence[Path]) -> list[Path]:
    """Files under the given paths (directories recursively), DICOM or not: the sender decides."""
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    return files


def send_files(files: Sequence[Path], host: str, port: int, called_ae: str, calling_ae: str = "RADIOMICS_CDS",
               timeout_s: float = 60.0, tls: ClientTls | None = None,
               on_progress: Callable[[int, int], None] | None = None) -> SendReport:
    """C-STORE every readable DICOM file; raise DeliveryError when no association is possible.
    `on_progress(handled, total)` before each file is offered to the peer and once all were (the
    send command's progress line)."""
    datasets = []
    report = SendReport()
    for file in files:
        try:
            datasets.append((file, pydicom.dcmread(file)))
        except Exception as error:  # missing, not DICOM, or damaged: report and keep going
            report.refuse(f"{file.name}: not readable as DICOM ({type(error).__name__})")
    contexts = {(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for _, ds in datasets}
    if len(contexts) > _MAX_CONTEXTS:
        raise DeliveryError(f"{len(contexts)} SOP class/transfer syntax pairs exceed {_MAX_CONTEXTS} contexts")
    if not datasets:
        return report
    ae = AE(ae_title=calling_ae)
    # connection_timeout too: without it a PACS that drops SYNs holds its outbox lane (its thread,
    # each of its deliveries in turn) for the kernel's connect timeout, about two minutes
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = timeout_s
    ae.requested_contexts = [build_context(sop, [syntax]) for sop, syntax in sorted(contexts)]
    try:
        context = tls.context() if tls is not None else None  # fresh per association: renewed files apply
    except ConfigError as error:
        raise DeliveryError(f"TLS with {called_ae} at {host}:{port} not attempted: {error}") from None
    association = ae.associate(host, port, ae_title=called_ae,
                               tls_args=(context, host) if context is not None else None)
    if context is not None and context.failure is not None and not association.is_established:
        raise DeliveryError(f"TLS with {called_ae} at {host}:{port} failed: {describe_failure(context.failure)}")
    if association.is_rejected:
        rejection = association.acceptor.primitive
        assert rejection is not None  # a rejected association has the acceptor's A-ASSOCIATE-RJ
        raise DeliveryError(f"{called_ae} at {host}:{port} rejected the association ({rejection.result_str}: "
                            f"{rejection.reason_str}; check its AE configuration)")
    if association.rejected_contexts and not association.accepted_contexts:
        refused = ", ".join(sorted({UID(cast(str, c.abstract_syntax)).name for c in association.rejected_contexts}))
        raise DeliveryError(f"{called_ae} at {host}:{port} accepts none of the proposed SOP classes ({refused})")
    if not association.is_established:
        raise DeliveryError(f"no association with {called_ae} at {host}:{port} (unreachable or timed out)")
    accepted = {(str(c.abstract_syntax), str(c.transfer_syntax[0])) for c in association.accepted_contexts}
    try:
        for handled, (file, ds) in enumerate(datasets):
            if on_progress is not None:
                on_progress(handled, len(datasets))
            if (str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) not in accepted:
                report.refuse(f"{file.name}: {called_ae} accepts no {ds.SOPClassUID.name} in "
                              f"{ds.file_meta.TransferSyntaxUID.name}")
                continue
            status = association.send_c_store(ds)
            code = getattr(status, "Status", None)
            if code is None:
                report.failed.append(f"{file.name}: no response (connection lost or timed out)")
            elif code in (0x0000, 0xB000, 0xB007, 0xB006):
                report.sent += 1
            else:
                report.failed.append(f"{file.name}: status 0x{code:04X} {status.get('ErrorComment', '')}".strip())
        if on_progress is not None:
            on_progress(len(datasets), len(datasets))
    finally:
        association.release()
    return report


def store_one(path: Path, host: str, port: int, called_ae: str, calling_ae: str, tls: ClientTls | None = None) -> None:
    """Deliver one file; DeliveryError when it was not stored (retried by the outbox)."""
    report = send_files([path], host, port, called_ae, calling_ae, tls=tls)
    if report.failed:
        raise DeliveryError("; ".join(report.failed), permanent=bool(report.refused))
