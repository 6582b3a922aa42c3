"""`radiomics-cds prune` lists (--dry-run) or removes what spool retention removes, run as an
operator runs it, on the service's own files: an index, a spool and an outbox made by the real
StudyIndex, Spool and Outbox. Which studies retention chooses is tests/unit/test_retention.py's;
here, that the command chooses by the same rules, prints each study and the total, and removes
only without --dry-run.
"""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from service.config import load_config
from service.ingest.index import DONE, InstanceRecord, StudyIndex
from service.ingest.spool import Spool
from service.outputs.artefacts import Artefact, artefact_path
from service.outputs.outbox import Outbox
from service.sop_classes import CT_IMAGE
from tests.support.destinations import RecordingDestination

CLI = [sys.executable, "-m", "service.cli"]
# In this order: each delivery round delivers every SR queued so far, the pending one's is queued last.
STUDIES = {"old-delivered": "1.2.826.0.1.3680043.10.545.1", "recent": "1.2.826.0.1.3680043.10.545.3",
           "old-pending": "1.2.826.0.1.3680043.10.545.2"}
AGE_DAYS = 10
FAR_FUTURE = time.time() + 10**9  # every delivery due


def _var_dir(tmp_path: Path) -> tuple[Path, dict[str, list[InstanceRecord]]]:
    """Three done studies of two spooled files each: two scored AGE_DAYS ago, one of them with
    its SR delivered, the other's pending; one scored now, delivered."""
    config = load_config(environ={"RCDS_VAR_DIR": str(tmp_path / "var")})
    index, spool = StudyIndex(config.index_path), Spool(config.spool_dir)
    outbox = Outbox(config.outbox_database, [RecordingDestination("pacs", Artefact.SR)])
    records: dict[str, list[InstanceRecord]] = {}
    try:
        for name, study_uid in STUDIES.items():
            records[name] = []
            for number, size in ((1, 4000), (2, 6000)):
                path = spool.store(study_uid, f"{study_uid}.{number}", io.BytesIO(os.urandom(size)))
                records[name].append(InstanceRecord(f"{study_uid}.{number}", CT_IMAGE, study_uid, f"{study_uid}.9",
                                                    "CT", "1.2.3.4", (0.0,), path, time.time()))
                index.add_instance(records[name][-1])
            assert index.claim(study_uid) and index.finish(study_uid, DONE, result=f"{study_uid}.99")
            outbox.enqueue("pacs", artefact_path(config.outbox_dir, f"{study_uid}.99", Artefact.SR))
            if name != "old-pending":
                outbox.deliver_due(FAR_FUTURE)
    finally:
        outbox.stop()
        index.close()
    with sqlite3.connect(config.index_path) as db:
        db.execute("UPDATE studies SET waiting_since = waiting_since - ?1, last_received_at = last_received_at - ?1,"
                   " updated_at = updated_at - ?1 WHERE study_instance_uid <> ?2",
                   (AGE_DAYS * 86400, STUDIES["recent"]))
    for name, study_records in records.items():  # the files as old as the studies (retention keeps newer ones)
        for record in study_records if name != "recent" else ():
            written = os.stat(record.path).st_mtime - AGE_DAYS * 86400
            os.utime(record.path, (written, written))
    return config.var_dir, records


def _prune(var_dir: Path, *arguments: str, **settings: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "RCDS_VAR_DIR": str(var_dir), **{f"RCDS_{k.upper()}": v for k, v in settings.items()}}
    return subprocess.run(CLI + ["prune", *arguments], env=environ, capture_output=True, text=True, timeout=120)


def _name(uid: str) -> str:
    key = hashlib.sha256(uid.encode()).hexdigest()
    return f"{key[:16]}  uid:{key[:8]}"


def _removed_at(var_dir: Path, study_uid: str) -> float | None:
    with sqlite3.connect(var_dir / "index.sqlite") as db:
        return db.execute("SELECT files_removed_at FROM studies WHERE study_instance_uid = ?", (study_uid,)).fetchone()[0]


def test_dry_run_lists_the_old_delivered_study_with_its_size_and_removes_nothing(tmp_path: Path) -> None:
    var_dir, records = _var_dir(tmp_path)
    size = sum(os.stat(record.path).st_size for record in records["old-delivered"])
    listed = _prune(var_dir, "--dry-run", "--days", "7")
    assert (listed.returncode, listed.stderr) == (0, "")
    assert listed.stdout.splitlines() == [
        f"{_name(STUDIES['old-delivered'])}  done  {AGE_DAYS}d 0h  {size} bytes",
        f"would free {size} bytes of 1 study done or failed more than 7 days ago"]
    assert all(record.path.is_file() for study in records.values() for record in study)
    assert _removed_at(var_dir, STUDIES["old-delivered"]) is None


def test_prune_removes_what_the_retention_setting_chooses_and_marks_it(tmp_path: Path) -> None:
    var_dir, records = _var_dir(tmp_path)
    size = sum(os.stat(record.path).st_size for record in records["old-delivered"])
    before = time.time()
    pruned = _prune(var_dir, spool_retention_days="7")
    assert (pruned.returncode, pruned.stderr) == (0, "")
    assert pruned.stdout.splitlines() == [
        f"{_name(STUDIES['old-delivered'])}  done  {AGE_DAYS}d 0h  {size} bytes",
        f"freed {size} bytes of 1 study done or failed more than 7 days ago"]
    assert not any(record.path.exists() for record in records["old-delivered"])
    assert not records["old-delivered"][0].path.parent.exists()
    assert before <= (_removed_at(var_dir, STUDIES["old-delivered"]) or 0) <= time.time()
    assert all(record.path.is_file() for name in ("old-pending", "recent") for record in records[name])
    again = _prune(var_dir, "--days", "7")
    assert again.stdout == "freed 0 bytes of 0 studies done or failed more than 7 days ago\n"


def test_without_a_retention_or_days_prune_refuses_and_removes_nothing(tmp_path: Path) -> None:
    var_dir, records = _var_dir(tmp_path)
    off = _prune(var_dir)
    assert (off.returncode, off.stdout) == (3, "")
    assert "spool retention is off (spool_retention_days is 0): give --days" in off.stderr
    assert _prune(var_dir, "--days", "0").returncode == 2
    assert all(record.path.is_file() for study in records.values() for record in study)
