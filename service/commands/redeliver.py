"""`radiomics-cds redeliver`: deliveries the outbox gave up, attempted again."""

from __future__ import annotations

import argparse

from service.commands._service_files import service_file
from service.config import load_config
from service.outputs.outbox import redeliver


def run(args: argparse.Namespace) -> int:
    """Every delivery given up (state failed: refused for good, or out of attempts), or those of
    --destination, back to pending with its attempts from 0, once the cause is fixed (a PACS back,
    a renewed token, a corrected URL). Works beside a running service, whose outbox takes them
    up within a second; a service started later does so at start. Prints how many per destination."""
    counts = redeliver(service_file(load_config(args.config).outbox_database, "outbox"), args.destination)
    if not counts:
        print("no delivery was given up" + (f" to {args.destination}" if args.destination else ""))
    for destination, count in sorted(counts.items()):
        print(f"{destination}: {count} deliver{'y' if count == 1 else 'ies'} queued again")
    return 0
