"""radiomics-cds command line: serve | ingest | scorer | score | features | send | status | redeliver | rescore | prune | show.

This module is the parser and the dispatch only; the commands are service.commands, one
module per command, imported once that command runs. A process spawned by `serve` (the page
renderer) re-imports the main module, so what this module imports every such process loads too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pydicom.errors import InvalidDicomError

from service import __version__
from service.config import LOG_LEVELS, load_config
from service.errors import RadiomicsCdsError
from service.exit_codes import ExitCode, error_text, exit_code_for, exit_codes_help
from service.observability import configure_logging, redact_uids


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radiomics-cds", description=(__doc__ or "").split("\n\n")[0],
                                     epilog=exit_codes_help(),
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
    ingest = with_config(commands.add_parser("ingest", help="listener + worker + outbox, using a remote scorer"))
    ingest.add_argument("--port", type=int, help="DICOM port (default 11112)")
    scorer = with_config(commands.add_parser("scorer", help="the gRPC scoring core"))
    scorer.add_argument("--address", help="listen address (default 127.0.0.1:50051)")
    scorer.add_argument("--lifeline-fd", type=int, help=argparse.SUPPRESS)  # serve's child: service.lifeline

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
    features.set_defaults(check=_check_feature_inputs)

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
    send.set_defaults(check=_check_send_tls)

    status = with_config(commands.add_parser(
        "status", help="list studies, their state and how long they have been in it, and their deliveries per "
                   "destination"))
    status.add_argument("--show-uids", action="store_true",
                        help="show Study Instance UIDs, SR UIDs and UIDs in reasons in full (default: the "
                             "uid:<8 hex digits> tokens the log shows for them)")

    again = with_config(commands.add_parser(
        "redeliver", help="attempt again the deliveries the outbox gave up (once their cause is fixed)"))
    again.add_argument("--destination", help="only this destination's (pacs, pacs-summary, pacs-stow, "
                                             "pacs-stow-summary, fhir); default: every destination's")

    rescore = with_config(commands.add_parser(
        "rescore", help="score failed, named or priors-unavailable studies again (once the cause is fixed: the "
                        "scorer back, a bug fixed, the priors' PACS reachable)"))
    rescore.add_argument("studies", nargs="*", metavar="STUDY",
                         help="a done or failed study, as status shows it: its key, its uid: token or its Study "
                              "Instance UID")
    rescore.add_argument("--failed", action="store_true", help="every failed study")
    rescore.add_argument("--priors-unavailable", action="store_true",
                         help="every done study scored while its priors were unavailable (status: SR ... (priors "
                              "unavailable)), once a prior source answers again")
    rescore.add_argument("--show-uids", action="store_true",
                         help="show Study Instance UIDs in full (default: the uid:<8 hex digits> tokens the log "
                              "shows for them)")
    rescore.set_defaults(check=_check_rescore_studies)

    prune = with_config(commands.add_parser(
        "prune", help="remove now (or list, --dry-run) the spooled instances of studies spool retention removes: "
                      "done or failed, unchanged for --days (default: spool_retention_days), delivered and "
                      "reconciled"))
    prune.add_argument("--days", type=float, help="retention in days for this run (more than 0)")
    prune.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    prune.add_argument("--show-uids", action="store_true",
                       help="show Study Instance UIDs in full (default: the uid:<8 hex digits> tokens the log "
                            "shows for them)")
    prune.set_defaults(check=_check_prune_days)

    show = commands.add_parser("show", help="print the lesion table of one of our SRs, and its change table "
                                            "when the SR is a follow-up")
    show.add_argument("sr", type=Path)
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


def _check_rescore_studies(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if [bool(args.studies), args.failed, args.priors_unavailable].count(True) != 1:
        parser.error("rescore takes one of --failed, --priors-unavailable or the studies to score again")


def _check_prune_days(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.days is not None and not args.days > 0:
        parser.error("prune --days must be more than 0")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if hasattr(args, "check"):
        args.check(parser, args)
    try:
        settings = load_config(getattr(args, "config", None))  # the command loads it again, with its flags
        configure_logging(args.log_level or settings.log_level, settings.log_format)
        from service.commands import run  # here, not above: see this module's docstring

        return run(args)
    except (RadiomicsCdsError, InvalidDicomError, OSError) as error:
        print(f"radiomics-cds: {redact_uids(error_text(error))}", file=sys.stderr)  # a UID can identify the study
        return exit_code_for(error)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
