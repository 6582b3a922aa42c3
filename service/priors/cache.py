"""Prior SRs on disk by SOP Instance UID, so the next study of the patient fetches nothing again.

An SR instance never changes under its SOP Instance UID (a changed report is a new instance), so
a cached copy is always right and each replica can keep its own without coordination.
"""

from __future__ import annotations

import re
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from service.durable import write_atomically

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


class PriorCache:
    """`<directory>/<SOP Instance UID>.dcm`, written atomically and durably."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, sop_instance_uid: str) -> Path | None:
        """The file of a UID; None for a value that is not a UID (never a path out of the cache)."""
        return self.directory / f"{sop_instance_uid}.dcm" if _UID.fullmatch(sop_instance_uid) else None

    def get(self, sop_instance_uid: str) -> Dataset | None:
        """The cached SR, or None (not cached, or unreadable: then it is fetched again)."""
        path = self._path(sop_instance_uid)
        if path is None or not path.is_file():
            return None
        try:
            return pydicom.dcmread(path)
        except (InvalidDicomError, OSError, ValueError):
            return None

    def put(self, dataset: Dataset) -> None:
        """Keep a fetched SR; one whose SOP Instance UID is not a UID is not kept."""
        path = self._path(str(dataset.SOPInstanceUID))
        if path is not None:
            write_atomically(path, lambda stream: dataset.save_as(stream, enforce_file_format=True))
