"""`radiomics-cds prune`: the spooled instances spool retention removes, removed now (or listed)."""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

from service.commands._service_files import service_file, study_name
from service.commands.status import human_age
from service.config import load_config
from service.errors import ConfigError
from service.ingest.index import InstanceRecord, StudyIndex, StudyState
from service.ingest.spool import Spool
from service.outputs.outbox import read_deliveries
from service.retention import cutoff, expired, remove


def run(args: argparse.Namespace) -> int:
    """The studies retention removes (service.retention: done or failed and unchanged for --days,
    else spool_retention_days, their deliveries finished), one line each:
    key, token (UID only with --show-uids), state, age as `status` shows it, and the bytes its
    spooled files take; their files removed, unless --dry-run. For a spool filling now (a lower
    --days frees more at once than the service's bounded sweeps), or to see what a retention
    would remove before setting it. Beside a running service: each removal is checked again in
    the index's transaction, so a study to which an instance has just arrived is kept."""
    config = load_config(args.config)
    days = config.spool_retention_days if args.days is None else args.days
    if days <= 0:
        raise ConfigError("spool retention is off (spool_retention_days is 0): give --days")
    config = dataclasses.replace(config, spool_retention_days=days)
    index = StudyIndex(service_file(config.index_path, "index"))
    spool = Spool(config.spool_dir)
    try:
        now = time.time()
        studies = expired(index, spool, read_deliveries(config.outbox_database), config, now)
        freed = [_prune(index, spool, study, cutoff(days, now), now, args) for study in studies]
    finally:
        index.close()
    done = [size for size in freed if size is not None]
    verb = "would free" if args.dry_run else "freed"
    print(f"{verb} {sum(done)} bytes of {len(done)} stud{'y' if len(done) == 1 else 'ies'} done or failed more "
          f"than {days:g} days ago")
    return 0


def _prune(index: StudyIndex, spool: Spool, study: StudyState, before: float, now: float,
           args: argparse.Namespace) -> int | None:
    """One study removed (or, --dry-run, measured) and printed; its bytes, None when it
    changed since it was chosen and is kept."""
    name = f"{study_name(study.study_instance_uid, args.show_uids)}  {study.state}  {human_age(now - study.since)}"
    size = _spooled_bytes(index.instances(study.study_instance_uid)) if args.dry_run else \
        remove(index, spool, study, before)
    print(f"{name}  kept: it changed meanwhile" if size is None else f"{name}  {size} bytes")
    return size


def _spooled_bytes(instances: Sequence[InstanceRecord]) -> int:
    """What the study's spooled files take now (a file the running service's sweep removes
    meanwhile takes nothing)."""
    return sum(_size(record.path) for record in instances)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
