"""A study's spooled instances that are gone (spool retention removed them, or someone did),
retrieved again from PACS so that the study can be scored again.

Spool retention removes a study's instances once its result is delivered (service.retention).
Two things can still want them: a corrected RTSTRUCT or SEG arriving later for the study, and
an earlier study's report arriving after it (reconciliation scores it again to compare). PACS
holds the study (it sent it, or received our SR beside it), so with a prior source that
retrieves images (DICOMweb WADO-RS, DIMSE C-GET: service.priors.retrieve) the worker asks PACS
for exactly the instances the index lists and finds missing, and scores the study as it would
have with its spool intact. Without such a source, or when PACS no longer holds them, the study
fails as before, saying what is missing and what PACS answered.

Only instances this study was sent are put back: each is asked for by its series (whole, when
none of the series' instances is left; else one instance at a time) and kept only if its SOP
Instance UID is one the index lists as missing. What PACS holds beyond that (a series that grew
since) is left out: the study is scored again from what it was sent, not from what PACS has
now. Each file is written back durably where the index says it was, then the index's retention
mark is cleared (StudyIndex.files_restored), in that order: a crash between leaves files the
next attempt overwrites.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from service.dicom_limits import read_header
from service.durable import write_atomically
from service.errors import PriorSourceError
from service.ingest.index import InstanceRecord, StudyIndex
from service.priors.retrieve import RetrievalLimits, RetrievingProvider, SeriesRequest, retrieve_series


class SpoolRestoration:
    """Puts a study's missing spooled instances back from PACS."""

    def __init__(self, providers: Sequence[RetrievingProvider], index: StudyIndex, retrieve_dir: Path,
                 limits: RetrievalLimits = RetrievalLimits()) -> None:
        self._providers = providers
        self._index = index
        self._retrieve_dir = retrieve_dir
        self._limits = limits

    def restore(self, study_uid: str, records: Sequence[InstanceRecord]) -> int:
        """Retrieve the instances of `records` whose files are gone and write each back at its
        path; how many were put back. PriorSourceError when PACS cannot give every one of them
        (nothing is then written); OSError when the spool cannot take them."""
        missing = {record.sop_instance_uid: record for record in records if not record.path.is_file()}
        if not missing:
            return 0
        self._retrieve_dir.mkdir(parents=True, exist_ok=True)
        landing = Path(tempfile.mkdtemp(prefix="restore-", dir=self._retrieve_dir))
        try:
            paths = retrieve_series(self._providers, _requests(records, missing), landing, self._limits)
            found = {uid: path for path in paths if (uid := str(read_header(path)[0].SOPInstanceUID)) in missing}
            if len(found) < len(missing):
                raise PriorSourceError(f"PACS no longer holds {len(missing) - len(found)} of the "
                                       f"{len(missing)} instances")
            for uid, path in found.items():
                write_atomically(missing[uid].path, _copy_of(path))
            self._index.files_restored(study_uid)
            return len(found)
        finally:
            shutil.rmtree(landing, ignore_errors=True)


def _copy_of(path: Path) -> Callable[[BinaryIO], None]:
    """A writer of `path`'s bytes, for write_atomically."""
    def copy(out: BinaryIO) -> None:
        with path.open("rb") as source:
            shutil.copyfileobj(source, out, 1024 * 1024)
    return copy


def _requests(records: Sequence[InstanceRecord], missing: dict[str, InstanceRecord]) -> list[SeriesRequest]:
    """One request per series that lost all its instances (a CT series: one retrieval, not one
    per slice), one per instance of a series that kept some (a late RTSTRUCT in the old one's
    series, which is not asked for again)."""
    by_series: dict[tuple[str, str], list[InstanceRecord]] = defaultdict(list)
    for record in records:
        by_series[(record.study_instance_uid, record.series_instance_uid)].append(record)
    requests = []
    for (study_uid, series_uid), members in by_series.items():
        lost = [record for record in members if record.sop_instance_uid in missing]
        if len(lost) == len(members):
            requests.append(SeriesRequest(study_uid, series_uid))
        else:
            requests += [SeriesRequest(study_uid, series_uid, record.sop_instance_uid) for record in lost]
    return requests
