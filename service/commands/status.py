"""`radiomics-cds status`: the studies a service knows, how long each has been in its state, and
where their deliveries stand."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from service.commands._service_files import service_file, shown_uid
from service.config import load_config
from service.ingest.index import DONE, StudyState, read_studies
from service.ingest.spool import removed_by_retention, study_key
from service.observability import redact_uids
from service.outputs.artefacts import Artefact, artefact_path
from service.outputs.outbox import Delivery, DeliveryStatus, read_deliveries


# The study table's columns; `age` is the time in the study's current state (StudyState.since).
COLUMNS = ("log key", "study", "state", "age", "result or reason")


def run(args: argparse.Namespace) -> int:
    """Studies known to the index, under a header line: log key, Study Instance UID, state, how
    long it has been in that state, result (saying so when a done study was scored without its
    priors) or why it failed, where the result's deliveries stand, and whether retention removed
    its spooled instances; then the deliveries of each
    destination by state.

    The age counts as rcds_queue_oldest_seconds does, so the study an alert on that gauge is
    about is the one with that age here. UIDs (the study's, the SR's, any in a reason) are shown
    as the tokens the log uses for them, unless --show-uids: a Study Instance UID can identify
    the patient. Both files are read read-only, next to a running service.
    """
    config = load_config(args.config)
    index_path = service_file(config.index_path, "index")
    deliveries = read_deliveries(config.outbox_database)
    by_path: dict[Path, list[Delivery]] = {}
    for delivery in deliveries:
        by_path.setdefault(delivery.path, []).append(delivery)
    shown: Callable[[str], str] = (lambda text: text) if args.show_uids else redact_uids
    now = time.time()
    rows = []
    for study in read_studies(index_path):
        detail = study.error or _result(study)
        if study.result:
            states = [_delivery_state(delivery) for artefact in Artefact
                      for delivery in by_path.get(artefact_path(config.outbox_dir, study.result, artefact), [])]
            detail += f"  deliveries: {', '.join(states)}" if states else ""
        if study.files_removed_at is not None:
            detail += f"  instances {removed_by_retention(study.files_removed_at)}"
        uid = shown_uid(study.study_instance_uid, args.show_uids)
        rows.append((study_key(study.study_instance_uid), uid, study.state.value, human_age(now - study.since),
                     shown(detail)))
    print(_table(rows))
    print()
    print(_delivery_counts(deliveries))
    return 0


def _result(study: StudyState) -> str:
    """`SR <uid>`, with `(priors unavailable)` for a done study whose result was written while no
    prior source answered: scores without the response assessment, until the service scores it
    again with them (README, prior_retry_hours) or `rescore --priors-unavailable` sends it back.
    Said here, not in the state column, whose four values scripts (and the tests' waits) match."""
    if not study.result:
        return ""
    without_priors = study.state is DONE and study.priors_unavailable_since is not None
    return f"SR {study.result}" + (" (priors unavailable)" if without_priors else "")


def human_age(seconds: float) -> str:
    """`45s`, `3m`, `2h 5m`, `3d 4h`: the largest unit and, from hours up, the next one, enough
    to tell a study stuck for hours from one a minute old. A negative age (the clock set back
    since) shows as `0s`."""
    whole = max(0, int(seconds))
    days, hours, minutes = whole // 86400, whole % 86400 // 3600, whole % 3600 // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else f"{whole}s"


def _table(rows: Sequence[tuple[str, str, str, str, str]]) -> str:
    """COLUMNS and the rows, each column as wide as its widest cell (UIDs in full are longer
    than tokens), the last one not padded."""
    widths = [max(len(row[n]) for row in (COLUMNS, *rows)) for n in range(len(COLUMNS) - 1)]
    return "\n".join("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths)), row[-1]]).rstrip()
                     for row in (COLUMNS, *rows))


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
