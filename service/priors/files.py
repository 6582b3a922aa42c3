"""Prior SRs from files: the `score --prior PATH` source (files, or directories searched
recursively) and serve's `directory` source (prior_directory, e.g. the service's own outbox).
Both answer the same two questions as the PACS sources, so the same resolver applies the same
rules (ours only, not superseded, one per study, lookback and count, identity checked, noted).

Named files (`score --prior`): `find` returns every SR of ours it can read, whatever the
patient: the resolver's identity check then leaves another patient's SR out and says so,
instead of the file silently not counting. An archive (`directory` in prior_providers) holds many
patients' SRs and is asked as a PACS is asked: only the query's patient, within its dates.
Files that are not DICOM, or not our SRs, are skipped, and so are hidden files in a directory
(the outbox's writes in progress, .<name>.tmp, renamed once complete). Every `find` reads the
header of every file under the paths: meant for a single node or the demo, not for a
PACS-sized archive.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from service.config import Config
from service.errors import InputError, PriorSourceError
from service.model import StudyInfo
from service.outputs.codes import MANUFACTURER
from service.priors.cache import PriorCache
from service.priors.resolve import PriorLookup, PriorsOutcome, resolve_priors
from service.priors.source import PatientQuery, SrLocation

_HEADER = ["Modality", "Manufacturer", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "StudyDate",
           "StudyTime", "PatientID", "IssuerOfPatientID"]


class FilesProvider:
    """Our SRs among the given files and directories; `archive`: answer only the query's
    patient and date window (as QIDO-RS or C-FIND would), and a missing path is this source
    failing (priors unavailable, the next source tried) rather than an input error."""

    name = "directory"

    def __init__(self, paths: Iterable[Path], *, archive: bool = False) -> None:
        self._paths = tuple(paths)
        self._archive = archive
        self._found: dict[str, Path] = {}

    def find(self, query: PatientQuery) -> list[SrLocation]:
        """Our SRs in the paths: all of them, or in an archive those answering the query (named
        files leave the date window to the resolver, which notes an SR without a study date)."""
        locations = []
        for path in self._files():
            header = _header(path)
            if header is None or header.get("Modality") != "SR" or header.get("Manufacturer") != MANUFACTURER:
                continue
            if self._archive and not _answers(header, query):
                continue
            uid = str(header.SOPInstanceUID)
            self._found[uid] = path
            locations.append(SrLocation(str(header.get("StudyDate", "")), str(header.get("StudyTime", "")),
                                        str(header.StudyInstanceUID), str(header.SeriesInstanceUID), uid))
        return sorted(locations)

    def fetch(self, location: SrLocation) -> Dataset:
        try:
            return pydicom.dcmread(self._found[location.sop_instance_uid])
        except (KeyError, OSError, InvalidDicomError) as error:  # removed or replaced since find
            raise PriorSourceError(f"SR file no longer readable ({type(error).__name__})") from None

    def _files(self) -> list[Path]:
        files = []
        for path in self._paths:
            if path.is_dir():
                try:
                    files += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
                except OSError as error:
                    raise PriorSourceError(f"directory not readable ({error.strerror})") from None
            elif path.is_file():
                files.append(path)
            elif self._archive:
                raise PriorSourceError("prior_directory: no such directory")
            else:
                raise InputError(f"--prior {path}: no such file or directory")
        return files


def _answers(header: Dataset, query: PatientQuery) -> bool:
    """The SR is of the query's patient (and issuer, when the query names one) and its study
    date inside the query's window: what a PACS would return for the query."""
    issuer = str(header.get("IssuerOfPatientID", "") or "")
    return (str(header.get("PatientID", "") or "") == query.patient_id
            and (not query.issuer_of_patient_id or issuer == query.issuer_of_patient_id)
            and query.earliest_date <= str(header.get("StudyDate", "") or "") <= query.latest_date)


def _header(path: Path) -> Dataset | None:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER)
    except (InvalidDicomError, OSError, AttributeError, ValueError):
        return None


def file_priors(paths: Sequence[Path], config: Config) -> PriorLookup:
    """`--prior` files as a prior source, under the service's rules and limits (lookback,
    count, identity, superseded versions). The files are their own cache: the resolver's one
    lives in a temporary directory, removed when the command ends."""
    provider = FilesProvider(paths)

    def lookup(study: StudyInfo) -> PriorsOutcome:
        with tempfile.TemporaryDirectory(prefix="rcds-priors-") as scratch:
            return resolve_priors(study, [provider], PriorCache(Path(scratch)),
                                  lookback_days=config.prior_lookback_days, max_studies=config.prior_max_studies)
    return lookup
