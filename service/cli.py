"""radiomics-cds command line: serve | ingest | scorer | score | features | send | status | show."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from enum import IntEnum
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

from service import __version__
from service.app import run_ingest, run_scorer, run_serve, scoring_context
from service.config import LOG_LEVELS, Config, load_config
from service.errors import (ConfigError, DeliveryError, InputError, PriorSourceError, RadiomicsCdsError,
                            ScorerUnavailable, SignatureError)
from service.feature_report import features_from_dicom, features_from_nifti
from service.ingest.index import read_studies
from service.ingest.spool import study_key
from service.lifeline import follow_parent
from service.model import CtSeries
from service.observability import configure_logging, redact_uids, uid_token
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

log = logging.getLogger("radiomics-cds")


def _config(args: argparse.Namespace, **overrides: Any) -> Config:
    return load_config(args.config, **overrides)


def _cmd_serve(args: argparse.Namespace) -> int:
    return run_serve(_config(args, dicom_port=args.port), args.config)


def _cmd_ingest(args: argparse.Namespace) -> int:
    run_ingest(_config(args, dicom_port=args.port))
    return 0


def _cmd_scorer(args: argparse.Namespace) -> int:
    """The scorer role; as serve's child (--lifeline-fd), it also stops when serve is gone."""
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


class ExitCode(IntEnum):
    """What a command's exit status tells a script or a supervisor (listed by --help and in the
    README): whether to fix the command line, the settings or the input, or to try again later."""

    OK = 0
    FAILED = 1
    USAGE = 2  # argparse's own
    CONFIG = 3
    INPUT = 4
    UNAVAILABLE = 5
    INTERRUPTED = 130  # the shell's convention for SIGINT


_EXIT_CODE_MEANINGS = {
    ExitCode.OK: "done",
    ExitCode.FAILED: "the command ran but not all its work succeeded (send: files refused; serve: the scorer died)",
    ExitCode.USAGE: "the command line is wrong (unknown command or flag, missing or conflicting arguments)",
    ExitCode.CONFIG: "a setting, or a file a setting or flag names, is unusable (also: no permission to read or write "
                     "it, a read-only or full file system); or a port is taken",
    ExitCode.INPUT: "the input is unusable (a file missing or not DICOM, a series or contours that cannot be used)",
    ExitCode.UNAVAILABLE: "a peer could not be reached, refused us (association, TLS) or did not answer",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}
_EXIT_CODES: tuple[tuple[tuple[type[BaseException], ...], ExitCode], ...] = (
    ((ConfigError, SignatureError), ExitCode.CONFIG),
    ((InputError, InvalidDicomError, FileNotFoundError, IsADirectoryError, NotADirectoryError), ExitCode.INPUT),
    ((DeliveryError, ScorerUnavailable, PriorSourceError, ConnectionError, TimeoutError), ExitCode.UNAVAILABLE),
    ((OSError,), ExitCode.CONFIG),  # any other: a file or directory we may not or cannot use (--out, var_dir)
)


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit status of a command stopped by `error`; FAILED for another error of ours."""
    return next((code for kinds, code in _EXIT_CODES if isinstance(error, kinds)), ExitCode.FAILED)


def _error_text(error: BaseException) -> str:
    """The error line's text: an OSError as what failed and on which file (`cannot use /out/x.dcm:
    Permission denied`), not Python's `[Errno 13] ...`."""
    if isinstance(error, OSError) and error.strerror:
        return f"cannot use {error.filename}: {error.strerror}" if error.filename else error.strerror
    return str(error)


def _exit_codes_help() -> str:
    lines = [f"  {code.value:<4} {code.name.lower()}: {_EXIT_CODE_MEANINGS[code]}" for code in ExitCode]
    return "exit status:\n" + "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radiomics-cds", description=__doc__, epilog=_exit_codes_help(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"radiomics-cds {__version__}")
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS,
                        help="DEBUG, INFO, WARNING or ERROR (default: the log_level setting, INFO)")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_config(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--config", type=Path, help="YAML settings file (see README, Configuration)")
        return sub

    serve = with_config(commands.add_parser("serve", help="listener + worker + scorer, on embedded defaults"))
    serve.add_argument("--port", type=int, help="DICOM port (default 11112)")
    serve.set_defaults(handler=_cmd_serve)
    ingest = with_config(commands.add_parser("ingest", help="listener + worker + outbox, using a remote scorer"))
    ingest.add_argument("--port", type=int, help="DICOM port (default 11112)")
    ingest.set_defaults(handler=_cmd_ingest)
    scorer = with_config(commands.add_parser("scorer", help="the gRPC scoring core"))
    scorer.add_argument("--address", help="listen address (default 127.0.0.1:50051)")
    scorer.add_argument("--lifeline-fd", type=int, help=argparse.SUPPRESS)  # serve's child: service.lifeline
    scorer.set_defaults(handler=_cmd_scorer)

    score = with_config(commands.add_parser("score", help="score one study offline, write SR + FHIR Bundle"))
    score.add_argument("--ct", type=Path, required=True, help="directory of the CT series")
    contours = score.add_mutually_exclusive_group(required=True)
    contours.add_argument("--rtstruct", type=Path, help="RT Structure Set file")
    contours.add_argument("--seg", type=Path, help="DICOM SEG file")
    score.add_argument("--out", type=Path, required=True, help="directory for the SR and the Bundle")
    score.add_argument("--prior", type=Path, action="append", metavar="PATH",
                       help="an earlier SR of ours for the same patient, or a directory searched recursively for "
                            "them (repeatable): the outputs then carry the follow-up (matched lesions keep their "
                            "tracking UID; change versus baseline and previous). Another patient's SR, a superseded "
                            "one or one outside prior_lookback_days is left out, with a note")
    score.add_argument("--prior-ct", type=Path, action="append", default=[], metavar="DIR",
                       help="the CT series of a prior study (a directory; repeatable): when a prior is in another "
                            "Frame of Reference and no Spatial Registration object in the --ct directory relates "
                            "the two, the prior CT is registered rigidly to the current one so that lesions can be "
                            "matched by position")
    score.add_argument("--treatment-start", metavar="YYYY-MM-DD",
                       help="start of treatment (setting treatment_start): the baseline is the last study on or "
                            "before it, the one before that a pre-baseline scan for growth kinetics")
    score.add_argument("--baseline-study-uid", metavar="UID",
                       help="the baseline study of the response assessment (setting baseline_study_uid)")
    score.add_argument("--irradiated-lesion", dest="irradiated_lesions", action="append", metavar="TRACKING_UID",
                       help="tracking UID of an irradiated lesion (repeatable; setting irradiated_lesions): never "
                            "an automatic target; out-of-field response is assessed on the others")
    score.add_argument("--response-settings", dest="response_settings_file", type=Path, metavar="FILE",
                       help="the response rules' settings (setting response_settings_file): a YAML file with "
                            "sections recist, irecist, kinetics (examples/response-settings.yaml); those not at "
                            "their defaults are stated in the SR")
    score.set_defaults(handler=_cmd_score)

    features = commands.add_parser("features", help="features per ROI and region under explicit settings")
    inputs = features.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--ct", type=Path, help="directory of the CT series (with --rtstruct or --seg)")
    inputs.add_argument("--image", type=Path, help="NIfTI image (with --mask)")
    features.add_argument("--rtstruct", type=Path, help="RT Structure Set file")
    features.add_argument("--seg", type=Path, help="DICOM SEG file")
    features.add_argument("--mask", type=Path, help="NIfTI label mask on the image's grid")
    features.add_argument("--roi", action="append", help="ROI name or number (repeatable; default: all)")
    features.add_argument("--settings", type=Path,
                          help="pyradiomics parameter file (YAML); default: docs/method.md section 2")
    features.add_argument("--json", action="store_true", help="print JSON instead of a table")
    features.set_defaults(handler=_cmd_features, check=_check_feature_inputs)

    send = commands.add_parser("send", help="C-STORE files or directories to any Storage SCP")
    send.add_argument("paths", type=Path, nargs="+")
    send.add_argument("--host", default="127.0.0.1")
    send.add_argument("--port", type=int, default=11112)
    send.add_argument("--aet", default="RADIOMICS_CDS", help="called AE title")
    send.add_argument("--calling-aet", default="RCDS_SEND")
    send.add_argument("--tls", action="store_true",
                      help="DICOM over TLS (1.2 or later); the SCP's certificate must name --host")
    send.add_argument("--tls-ca-file", type=Path,
                      help="PEM CA certificates the SCP's certificate is verified against (default: the system's)")
    send.add_argument("--tls-cert-file", type=Path, help="our PEM client certificate (with --tls-key-file)")
    send.add_argument("--tls-key-file", type=Path, help="our PEM private key, unencrypted (with --tls-cert-file)")
    send.set_defaults(handler=_cmd_send, check=_check_send_tls)

    status = with_config(commands.add_parser(
        "status", help="list studies, their state and their deliveries per destination"))
    status.add_argument("--show-uids", action="store_true",
                        help="show Study Instance UIDs, SR UIDs and UIDs in reasons in full (default: the "
                             "uid:<8 hex digits> tokens the log shows for them)")
    status.set_defaults(handler=_cmd_status)

    show = commands.add_parser("show", help="print the lesion table of one of our SRs, and its change table "
                                            "when the SR is a follow-up")
    show.add_argument("sr", type=Path)
    show.set_defaults(handler=_cmd_show)
    return parser


def _check_feature_inputs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.ct and (args.rtstruct is None) == (args.seg is None):
        parser.error("features --ct needs exactly one of --rtstruct and --seg")
    if args.image and args.mask is None:
        parser.error("features --image needs --mask")
    if args.image and (args.rtstruct or args.seg or args.roi):
        parser.error("--rtstruct, --seg and --roi go with --ct, not with --image")


def _check_send_tls(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    given = [flag for flag, value in (("--tls-ca-file", args.tls_ca_file), ("--tls-cert-file", args.tls_cert_file),
                                      ("--tls-key-file", args.tls_key_file)) if value is not None]
    if given and not args.tls:
        parser.error(f"{', '.join(given)} need --tls")
    if (args.tls_cert_file is None) != (args.tls_key_file is None):
        parser.error("--tls-cert-file and --tls-key-file go together")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if hasattr(args, "check"):
        args.check(parser, args)
    try:
        settings = load_config(getattr(args, "config", None))  # the command loads it again, with its flags
        configure_logging(args.log_level or settings.log_level, settings.log_format)
        return args.handler(args)
    except (RadiomicsCdsError, InvalidDicomError, OSError) as error:
        print(f"radiomics-cds: {redact_uids(_error_text(error))}", file=sys.stderr)  # a UID can identify the study
        return exit_code_for(error)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
