"""The durable spool: every received instance is on disk before we answer Success.

Writes go through service.durable.write_atomically (temporary file, fsync, atomic rename,
directory fsync): a crash leaves either no file or the whole file, never a partial one. The
listener's received files are already whole files on the spool's volume: they are moved in
(fsync, rename) rather than copied, which saves writing every byte twice; the directory fsync
that makes the new name durable is the listener's group commit's (service.ingest.group_commit),
one for every file of a group in the same study directory.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from service.durable import move_in, remove_partial_writes, write_atomically
from service.ingest.index import InstanceRecord


def study_key(study_instance_uid: str) -> str:
    """A short, stable, non-identifying name for a study (directory names, logs)."""
    return hashlib.sha256(study_instance_uid.encode()).hexdigest()[:16]


def missing_from_spool(instances: Sequence[InstanceRecord], removed_at: float | None = None,
                       unretrievable: str | None = None) -> str | None:
    """Why a study cannot be scored again from what it was sent, when the files of some of its
    indexed instances are gone; None when every one is there. Read anyway, each would be
    reported as DICOM that cannot be read. `removed_at`: when spool retention removed the
    study's files (the index's mark), which the reason then names, so that a study whose CT
    retention removed, and to which a corrected RTSTRUCT came later, says so; else they were
    removed by hand or a volume was restored without them. Sending the study again restores the
    files but is no new instance to the index (the same SOP Instance UIDs): the study must then
    be sent back to be scored (`radiomics-cds rescore`). `unretrievable`: why PACS could not give
    them back (service.restoration), which the reason then says too."""
    gone = sum(not record.path.is_file() for record in instances)
    if not gone:
        return None
    where = "are no longer in the spool" if removed_at is None else f"were {removed_by_retention(removed_at)}"
    pacs = f", and putting them back from PACS failed ({unretrievable})" if unretrievable else ""
    return f"{gone} of its {len(instances)} received instances {where}{pacs}: send the study again, then rescore it"


def removed_by_retention(removed_at: float) -> str:
    """How a study whose spooled files retention removed is described (failure reasons, `status`):
    the day, in UTC, and the setting, so that an operator knows both when and why."""
    return f"removed from the spool by retention on {time.strftime('%Y-%m-%d', time.gmtime(removed_at))} UTC " \
           "(spool_retention_days)"


class Spool:
    """Instances stored as <root>/<study key>/<SOP Instance UID>.dcm."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def directory_for(self, study_instance_uid: str) -> Path:
        """The study's own directory, which holds its instances and nothing else."""
        return self.root / study_key(study_instance_uid)

    def path_for(self, study_instance_uid: str, sop_instance_uid: str) -> Path:
        return self.directory_for(study_instance_uid) / f"{sop_instance_uid}.dcm"

    def store(self, study_instance_uid: str, sop_instance_uid: str, source: BinaryIO) -> Path:
        """Store one instance durably, streaming it; the same UID again replaces it atomically."""
        path = self.path_for(study_instance_uid, sop_instance_uid)
        write_atomically(path, lambda out: shutil.copyfileobj(source, out, 1024 * 1024))
        return path

    def move_in(self, study_instance_uid: str, sop_instance_uid: str, received: Path) -> Path:
        """Move a complete received file into the spool, its data fsync'd (same volume: no
        copy); the same UID again replaces it atomically. Its name is durable once the returned
        path's directory is fsync'd (service.durable.fsync_directory): not before it is
        acknowledged."""
        path = self.path_for(study_instance_uid, sop_instance_uid)
        move_in(received, path)
        return path

    def remove_leftovers(self) -> int:
        """Delete partial writes a crash left behind (never acknowledged, so nothing is lost)."""
        return remove_partial_writes(self.root, "*/.*.tmp")
