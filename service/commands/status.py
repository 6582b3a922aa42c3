"""`radiomics-cds status`: the studies a service knows and where their deliveries stand."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from service.commands._service_files import service_file, study_name
from service.config import load_config
from service.ingest.index import read_studies
from service.observability import redact_uids
from service.outputs.artefacts import Artefact, artefact_path
from service.outputs.outbox import Delivery, DeliveryStatus, read_deliveries


def run(args: argparse.Namespace) -> int:
    """Studies known to the index: log key, Study Instance UID, state, result or why it failed,
    and where the result's deliveries stand; then the deliveries of each destination by state.

    UIDs (the study's, the SR's, any in a reason) are shown as the tokens the log uses for them,
    unless --show-uids: a Study Instance UID can identify the patient. Both files are read
    read-only, next to a running service.
    """
    config = load_config(args.config)
    index_path = service_file(config.index_path, "index")
    deliveries = read_deliveries(config.outbox_database)
    by_path: dict[Path, list[Delivery]] = {}
    for delivery in deliveries:
        by_path.setdefault(delivery.path, []).append(delivery)
    shown: Callable[[str], str] = (lambda text: text) if args.show_uids else redact_uids
    for study in read_studies(index_path):
        detail = study.error or (f"SR {study.result}" if study.result else "")
        if study.result:
            states = [_delivery_state(delivery) for artefact in Artefact
                      for delivery in by_path.get(artefact_path(config.outbox_dir, study.result, artefact), [])]
            detail += f"  deliveries: {', '.join(states)}" if states else ""
        print(f"{study_name(study.study_instance_uid, args.show_uids)}  {study.state:<10}  {shown(detail)}")
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
