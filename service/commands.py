"""What each command of the command line (service.cli) does, and what it imports to do it.

Apart from the parser so that importing service.cli loads none of this: a process spawned by
`serve` (the page renderer, service.outputs.page_process) re-imports the main module under
multiprocessing's spawn start method, and would otherwise load the scoring core, gRPC and the
DICOM listener only to render pages. service.cli imports this module once a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pydicom

from service.allocator import keep_freed_memory_for_reuse
from service.app import run_ingest, run_scorer, run_serve, scoring_context
from service.config import Config, load_config
from service.errors import ConfigError
from service.exit_codes import ExitCode
from service.feature_report import features_from_dicom, features_from_nifti
from service.ingest.index import read_studies
from service.ingest.spool import study_key
from service.lifeline import follow_parent
from service.model import CtSeries
from service.observability import redact_uids, uid_token
from service.outputs.artefacts import Artefact, artefact_path
from service.outputs.outbox import Delivery, DeliveryStatus, read_deliveries
from service.outputs.pacs import dicom_files, send_files
from service.imaging.selection import read_study_headers
from service.imaging.volume import read_ct_directory
from service.pipeline import WrittenOutputs, run_study
from service.response import ResponseInputs
from service.prior_frames import PriorCtSource
from service.priors.files import file_priors
from service.report import (change_rows_from_sr, format_change_table, format_feature_table, format_table,
                            response_line_from_sr,
                            rows_from_result, rows_from_sr)
from service.scoring.in_process import InProcessScorer
from service.scoring.parameter_file import load_parameter_file
from service.scoring.settings import ExtractionSettings
from service.tls import ClientTls


def _config(args: argparse.Namespace, **overrides: Any) -> Config:
    return load_config(args.config, **overrides)


def _cmd_serve(args: argparse.Namespace) -> int:
    return run_serve(_config(args, dicom_port=args.port), args.config)


def _cmd_ingest(args: argparse.Namespace) -> int:
    run_ingest(_config(args, dicom_port=args.port))
    return 0


def _cmd_scorer(args: argparse.Namespace) -> int:
    """The scorer role; as serve's child (--lifeline-fd), it also stops when serve is gone."""
    keep_freed_memory_for_reuse()
    stop = threading.Event()
    on_ready = follow_parent(args.lifeline_fd, stop) if args.lifeline_fd is not None else None
    run_scorer(_config(args, scorer_address=args.address), stop, on_ready)
    return 0


def _print_result(written: WrittenOutputs) -> None:
    result = written.result
    print(format_table(rows_from_result(result)))
    print()
    print(f"Signature: {result.provenance.signature_id} {result.provenance.signature_version} "
          f"({result.provenance.signature_status}); risk group: {result.patient.risk_group} "
          f"(cut-off {result.patient.cutoff_name})")
    for warning in result.warnings:
        print(f"warning: {warning}")
    print(f"SR:                    {written.sr_path}")
    print(f"Tumour-board page:     {written.summary_path}")
    print(f"  as Encapsulated PDF: {written.summary_document_path}")
    print(f"FHIR Bundle:           {written.bundle_path}")


def _cmd_score(args: argparse.Namespace) -> int:
    """The service's pipeline, offline: the study's files, scored by the scoring core in this process."""
    config = _config(args, **{name: value for name in ("treatment_start", "baseline_study_uid", "irradiated_lesions",
                                                         "response_settings_file")
                               if (value := getattr(args, name)) is not None})
    response_inputs = ResponseInputs.from_config(config)  # a wrong rule setting stops before any scoring
    progress = terminal_progress("scored", "lesions")
    scorer = InProcessScorer(scoring_context(config), volume_filter_ml=config.volume_filter_ml,
                             max_message_bytes=config.grpc_max_message_bytes)
    written = run_study(read_study_headers(args.ct, args.rtstruct or args.seg), scorer, args.out,
                        patient_identifier_system=config.patient_identifier_system,
                        parallel=config.scorer_workers, lesion_roi_types=frozenset(config.lesion_roi_types),
                        max_lesions=config.max_lesions_per_study, limits=config.instance_limits,
                        priors=file_priors(args.prior, config) if args.prior else None,
                        prior_ct=_directory_prior_ct(args.prior_ct),
                        response_inputs=response_inputs,
                        on_progress=progress.lesion_done if progress else None)
    _print_result(written)
    return 0


def _directory_prior_ct(directories: Sequence[Path]) -> PriorCtSource:
    """`--prior-ct` directories as the source of prior CTs: the one holding the prior study's CT
    (its series, when the prior SR names it). Read only when a registration needs it."""
    def prior_ct(study_uid: str, series_uid: str | None) -> CtSeries | None:
        for directory in directories:
            ct = read_ct_directory(directory)
            if ct.study_instance_uid == study_uid and series_uid in (None, ct.series_instance_uid):
                return ct
        return None
    return prior_ct


def _cmd_features(args: argparse.Namespace) -> int:
    """Features per ROI and region under a pyradiomics parameter file (docs/features.md)."""
    keep_freed_memory_for_reuse()
    settings = load_parameter_file(args.settings) if args.settings else ExtractionSettings()
    if args.image:
        report = features_from_nifti(args.image, args.mask, settings)
    else:
        report = features_from_dicom(args.ct, args.rtstruct or args.seg, settings, args.roi)
    document = report.as_json()
    if args.json:
        json.dump(document, sys.stdout, indent=2, allow_nan=False)
        print()
    else:
        print(format_feature_table(report))
    return 0


def _cmd_send(args: argparse.Namespace) -> int:
    tls = ClientTls(args.tls_ca_file, args.tls_cert_file, args.tls_key_file,
                    names=("--tls-ca-file", "--tls-cert-file", "--tls-key-file")) if args.tls else None
    if tls is not None:
        tls.context()  # unusable certificate or key files: say so before reading any DICOM file
    files = dicom_files(args.paths)
    progress = terminal_progress("sent", "files")
    report = send_files(files, args.host, args.port, args.aet, args.calling_aet, tls=tls,
                        on_progress=progress.update if progress else None)
    print(f"sent {report.sent} of {len(files)} files to {args.aet} at {args.host}:{args.port}")
    for failure in report.failed:
        print(f"failed: {failure}", file=sys.stderr)
    return ExitCode.FAILED if report.failed else ExitCode.OK


def terminal_progress(verb: str, unit: str) -> TerminalProgress | None:
    """A progress line when stderr is a terminal; None otherwise, so logs and pipes get no
    carriage returns."""
    return TerminalProgress(verb, unit) if sys.stderr.isatty() else None


class TerminalProgress:
    """`sent 120/600 files, 35.2 files/s` (or `scored 2/5 lesions (lesion 4), 0.3 lesions/s`) on
    one terminal line, rewritten in place (at most ten times a second) and ended with a newline
    once everything is done."""

    def __init__(self, verb: str, unit: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._verb, self._unit, self._clock = verb, unit, clock
        self._start = clock()
        self._shown_at = -1.0

    def update(self, done: int, total: int, current: str = "") -> None:
        """`current`: what was just done, shown in brackets (a lesion's number, never its name)."""
        now = self._clock()
        if done < total and now - self._shown_at < 0.1:
            return
        self._shown_at = now
        elapsed = now - self._start
        rate = f", {done / elapsed:.1f} {self._unit}/s" if elapsed > 0 and done else ""
        detail = f" ({current})" if current else ""
        print(f"\r{self._verb} {done}/{total} {self._unit}{detail}{rate}", end="\n" if done == total else "",
              file=sys.stderr, flush=True)

    def lesion_done(self, done: int, total: int, number: int) -> None:
        """score_lesions' progress callback (service.scorer.LesionProgress)."""
        self.update(done, total, f"lesion {number}")


def _cmd_show(args: argparse.Namespace) -> int:
    """The lesion table of one of our SRs, then its change table when it is a follow-up."""
    dataset = pydicom.dcmread(args.sr)
    rows, footer = rows_from_sr(dataset)
    print(format_table(rows, footer))
    changes = change_rows_from_sr(dataset)
    if changes:
        print()
        print("Change against the earlier studies:")
        print(format_change_table(changes))
    response = response_line_from_sr(dataset)
    if response:
        print()
        print(response)
    page = artefact_path(args.sr.parent, str(dataset.SOPInstanceUID), Artefact.SUMMARY_PDF)
    if page.is_file():
        print()
        print(f"Tumour-board page: {page}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    """Studies known to the index: log key, Study Instance UID, state, result or why it failed,
    and where the result's deliveries stand; then the deliveries of each destination by state.

    UIDs (the study's, the SR's, any in a reason) are shown as the tokens the log uses for them,
    unless --show-uids: a Study Instance UID can identify the patient. Both files are read
    read-only, next to a running service.
    """
    config = _config(args)
    if not config.index_path.is_file():  # a mistyped var_dir must not look like an empty service
        raise ConfigError(f"no index at {config.index_path}: is var_dir (RCDS_VAR_DIR, --config) the service's?")
    deliveries = read_deliveries(config.outbox_database)
    by_path: dict[Path, list[Delivery]] = {}
    for delivery in deliveries:
        by_path.setdefault(delivery.path, []).append(delivery)
    shown: Callable[[str], str] = (lambda text: text) if args.show_uids else redact_uids
    for study in read_studies(config.index_path):
        detail = study.error or (f"SR {study.result}" if study.result else "")
        if study.result:
            states = [_delivery_state(delivery) for artefact in Artefact
                      for delivery in by_path.get(artefact_path(config.outbox_dir, study.result, artefact), [])]
            detail += f"  deliveries: {', '.join(states)}" if states else ""
        uid = study.study_instance_uid if args.show_uids else uid_token(study.study_instance_uid)
        print(f"{study_key(study.study_instance_uid)}  {uid}  {study.state:<10}  {shown(detail)}")
    print()
    print(_delivery_counts(deliveries))
    return 0


def _delivery_state(delivery: Delivery) -> str:
    """`pacs delivered`; a pending or failed one with its attempts and, failed, the last error."""
    text = f"{delivery.destination} {delivery.state}"
    if delivery.state == DeliveryStatus.DELIVERED or not delivery.attempts:
        return text
    reason = f": {delivery.last_error}" if delivery.state == DeliveryStatus.FAILED and delivery.last_error else ""
    plural = "s" if delivery.attempts > 1 else ""
    return f"{text} ({delivery.attempts} attempt{plural}{reason})"


def _delivery_counts(deliveries: Sequence[Delivery]) -> str:
    """Deliveries per destination and state, a row per destination that has any."""
    states = list(DeliveryStatus)
    lines = [f"{'destination':<12}" + "".join(f"{state.value:>11}" for state in states)]
    for name in sorted({delivery.destination for delivery in deliveries}):
        counts = [sum(1 for d in deliveries if d.destination == name and d.state == state) for state in states]
        lines.append(f"{name:<12}" + "".join(f"{count:>11}" for count in counts))
    return "\n".join(lines)


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": _cmd_serve, "ingest": _cmd_ingest, "scorer": _cmd_scorer, "score": _cmd_score,
    "features": _cmd_features, "send": _cmd_send, "status": _cmd_status, "show": _cmd_show,
}
"""The command named on the command line (service.cli's sub-parsers) -> what runs it."""
