"""`radiomics-cds rescore`: failed, named or priors-unavailable studies scored again, once the
cause is fixed."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from service.commands._service_files import service_file, study_name
from service.config import load_config
from service.exit_codes import ExitCode
from service.ingest.index import DONE, FAILED, PROCESSING, InstanceRecord, StudyIndex, StudyState
from service.ingest.spool import missing_from_spool, study_key
from service.observability import redact_uids, uid_token
from service.sop_classes import CONTOUR_SOP_CLASSES

REASON = "scored again on request (radiomics-cds rescore)"
"""The error `status` shows for a study sent back, until it is scored."""


def run(args: argparse.Namespace) -> int:
    """Every failed study (--failed), every done study scored while its priors were unavailable
    (--priors-unavailable), or the studies named (each by the key, the token or the Study
    Instance UID `status` shows), done or failed, back to be scored from attempt 0: once the
    cause of a failure is fixed (the scorer back after the worker's retries ran out, a bug
    fixed), or once the PACS of priors answers again for a study scored without them (the
    worker scores such a study again by itself when a source answers within prior_retry_hours;
    this is for later, or sooner). A study receiving or being scored is left as it is.

    Works beside a running service: the index is SQLite in WAL mode, and the worker assesses the
    receiving studies at every poll (within a second); a service started later does so at start.
    Prints what became of each study, named by key and token (UID only with --show-uids); exit 1
    when a name is unknown or a study cannot be scored again (no contours; files gone from the
    spool, unless a prior source retrieves images: the worker then puts them back from PACS
    first)."""
    config = load_config(args.config)
    retrieves = config.prior_sources_retrieve  # the worker puts files gone from the spool back from PACS
    index = StudyIndex(service_file(config.index_path, "index"))
    try:
        unknown: list[str] = []
        if args.failed or args.priors_unavailable:
            studies = index.studies_in(FAILED) if args.failed else index.scored_without_priors()
            if not studies:
                print("no failed study" if args.failed else "no study scored while its priors were unavailable")
        else:
            studies, unknown = _named(args.studies, index.studies_in(), args.show_uids)
        for problem in unknown:
            print(problem, file=sys.stderr)
        queued = [_queue(index, study, args.show_uids, retrieves) for study in studies]
    finally:
        index.close()
    return ExitCode.FAILED if unknown or not all(queued) else ExitCode.OK


def _named(names: Sequence[str], studies: Sequence[StudyState], show_uids: bool) -> tuple[list[StudyState], list[str]]:
    """The studies `names` name, each once, in the order named; and what is wrong with a name
    that names no study, or more than one: a token has 8 hex digits, which two studies of a
    large index may share (not their 16-digit keys)."""
    by_name: dict[str, list[StudyState]] = {}
    for study in studies:
        uid = study.study_instance_uid
        for name in (uid, study_key(uid), uid_token(uid)):
            by_name.setdefault(name, []).append(study)
    found: dict[str, StudyState] = {}
    problems: list[str] = []
    for name in names:
        matches = by_name.get(name, [])
        shown = name if show_uids else redact_uids(name)  # a Study Instance UID given is shown as its token
        if len(matches) == 1:
            found.setdefault(matches[0].study_instance_uid, matches[0])
        elif matches:
            problems.append(f"{shown}: names {len(matches)} studies; give the key status shows for the one meant")
        else:
            problems.append(f"{shown}: no such study in the index")
    return list(found.values()), problems


def _queue(index: StudyIndex, study: StudyState, show_uids: bool, retrieves: bool) -> bool:
    """Send one study back to be scored, saying so; False when scoring it again cannot help.
    `retrieves`: a prior source can retrieve images, so files gone from the spool are no reason
    not to (the worker retrieves them from PACS first, service.restoration)."""
    name = study_name(study.study_instance_uid, show_uids)
    if study.state in (DONE, FAILED):
        instances = index.instances(study.study_instance_uid)
        unscorable = _without_contours(instances)
        gone = missing_from_spool(instances, study.files_removed_at)
        if unscorable is None and not retrieves:
            unscorable = gone
        if unscorable is not None:
            print(f"{name}  not queued ({study.state}): {unscorable}", file=sys.stderr)
            return False
        if index.rescore(study.study_instance_uid, REASON, failed_too=True):
            retrieval = "; its instances missing from the spool are retrieved from PACS first" if gone else ""
            print(f"{name}  queued to be scored again (was {study.state}){retrieval}")
            return True
        study = index.study(study.study_instance_uid) or study  # an instance arrived meanwhile: receiving
    print(f"{name}  {'being scored now' if study.state is PROCESSING else 'already queued to be scored'}: "
          "nothing changed")
    return True


def _without_contours(instances: Sequence[InstanceRecord]) -> str | None:
    """Why scoring a study without contours again cannot help (the worker would hold it for the
    hard cap and fail it again; contours arriving send it back by themselves), or None. A study
    with files gone from the spool (removed by retention, or by hand) would fail at once unless
    PACS can give them back (the caller's `retrieves`)."""
    if not any(record.sop_class_uid in CONTOUR_SOP_CLASSES for record in instances):
        return "no RTSTRUCT or SEG was received: it is scored once one arrives"
    return None
