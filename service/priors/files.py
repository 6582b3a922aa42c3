"""Prior SRs from files: the `score --prior PATH` source (a file, or a directory searched
recursively), answering the same two questions as the PACS sources so that the same resolver
applies the same rules (ours only, not superseded, one per study, identity checked, noted).

`find` returns every SR of ours it can read, whatever the patient: the resolver's identity
check then leaves another patient's SR out and says so, instead of the file silently not
counting. Files that are not DICOM, or not our SRs, are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from service.errors import InputError
from service.outputs.codes import MANUFACTURER
from service.priors.source import PatientQuery, SrLocation


class FilesProvider:
    """Our SRs among the given files and directories."""

    name = "files"

    def __init__(self, paths: Iterable[Path]) -> None:
        self._paths = tuple(paths)
        self._found: dict[str, Path] = {}

    def find(self, query: PatientQuery) -> list[SrLocation]:
        """Every SR of ours in the paths; the date window is the resolver's to apply."""
        locations = []
        for path in self._files():
            header = _header(path)
            if header is None or header.get("Modality") != "SR" or header.get("Manufacturer") != MANUFACTURER:
                continue
            uid = str(header.SOPInstanceUID)
            self._found[uid] = path
            locations.append(SrLocation(str(header.get("StudyDate", "")), str(header.get("StudyTime", "")),
                                        str(header.StudyInstanceUID), str(header.SeriesInstanceUID), uid))
        return sorted(locations)

    def fetch(self, location: SrLocation) -> Dataset:
        return pydicom.dcmread(self._found[location.sop_instance_uid])

    def _files(self) -> list[Path]:
        files = []
        for path in self._paths:
            if path.is_dir():
                files += sorted(p for p in path.rglob("*") if p.is_file())
            elif path.is_file():
                files.append(path)
            else:
                raise InputError(f"--prior {path}: no such file or directory")
        return files


def _header(path: Path) -> Dataset | None:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[
            "Modality", "Manufacturer", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "StudyDate",
            "StudyTime"])
    except (InvalidDicomError, OSError, AttributeError, ValueError):
        return None
