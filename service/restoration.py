"""A study's spooled instances that are gone (spool retention removed them, or someone did),
retrieved again from PACS so that the study can be scored again.

Spool retention removes a study's instances once its result is delivered (service.retention).
Three things can still want them: a corrected RTSTRUCT or SEG arriving later for the study, an
earlier study's report arriving after it (reconciliation scores it again to compare), and
`rescore`. PACS holds the study (it sent it, or received our SR beside it), so with a prior
source that retrieves images (DICOMweb WADO-RS, DIMSE C-GET: service.priors.retrieve) the
worker asks PACS for the instances the index lists and finds missing. Without such a source, or
when PACS no longer holds them, nothing is written and the caller says why.

Only instances this study was sent are put back: each series with a missing instance is asked
for whole (one call, not one per slice), and a retrieved file is kept only if its SOP Instance
UID is one the index lists as missing; what PACS holds beyond that (a series that grew since) is
left out. Each is written back durably where the index says it was, never over a file there (the
listener may have stored the instance, sent again, meanwhile: what was sent wins over PACS's
copy). PACS's copy is what PACS kept: a PACS that rewrote headers or compressed the pixels
lossily gives those back. Then, every file of the study being there, the index's retention mark
is cleared (StudyIndex.files_restored); a crash between the two leaves the files and the mark,
which the worker clears when it next finds nothing missing.
"""

from __future__ import annotations

import errno
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

from service.dicom_limits import read_header
from service.durable import write_if_absent
from service.errors import PriorNotHeld
from service.ingest.index import InstanceRecord, StudyIndex
from service.ingest.spool import study_key
from service.priors.retrieve import RetrievalLimits, RetrievingProvider, SeriesRequest, retrieve_series

log = logging.getLogger(__name__)


class OutsideSpool(OSError):
    """The index places a missing instance outside the spool directory (a var directory moved or
    restored elsewhere): nothing can be put back, now or later."""


class SpoolRestoration:
    """Puts a study's missing spooled instances back from PACS."""

    def __init__(self, providers: Sequence[RetrievingProvider], index: StudyIndex, spool_dir: Path,
                 retrieve_dir: Path, limits: RetrievalLimits = RetrievalLimits()) -> None:
        self._providers = providers
        self._index = index
        self._spool_dir = spool_dir.resolve()
        self._retrieve_dir = retrieve_dir
        self._limits = limits

    def restore(self, study_uid: str, records: Sequence[InstanceRecord]) -> int:
        """Retrieve the instances of `records` whose files are gone, write each back at its path
        and clear the study's retention mark; how many were retrieved. Nothing is written when
        PACS cannot give every one of them: PriorNotHeld when it answered that it does not hold
        them, PriorSourceError when it could not be asked (down, timed out). OutsideSpool when
        the index places them outside the spool; OSError when the spool cannot take them, its
        message without the file's name (it holds a UID)."""
        missing = {record.sop_instance_uid: record for record in records if not record.path.is_file()}
        if not missing:
            return 0
        outside = sum(not record.path.resolve().is_relative_to(self._spool_dir) for record in missing.values())
        if outside:  # an index from another var_dir: nothing is written where it points
            raise OutsideSpool(errno.EINVAL, f"the index places {outside} of them outside the spool directory")
        self._retrieve_dir.mkdir(parents=True, exist_ok=True)
        landing = Path(tempfile.mkdtemp(prefix="restore-", dir=self._retrieve_dir))
        try:
            paths = retrieve_series(self._providers, _requests(missing.values()), landing, self._limits)
            found = {uid: path for path in paths if (uid := str(read_header(path)[0].SOPInstanceUID)) in missing}
            if len(found) < len(missing):
                raise PriorNotHeld(f"PACS no longer holds {len(missing) - len(found)} of the {len(missing)} instances")
            self._write_back(found, missing)
        finally:
            shutil.rmtree(landing, ignore_errors=True)
        still = sum(not record.path.is_file() for record in records)
        if still:  # retention's sweep was removing them as they came back: the mark stays
            raise OSError(errno.ENOENT, f"{still} of its instances left the spool meanwhile")
        self._index.files_restored(study_uid)
        log.info("study %s: %d instances missing from the spool retrieved from PACS again", study_key(study_uid),
                 len(found))
        return len(found)

    @staticmethod
    def _write_back(found: dict[str, Path], missing: dict[str, InstanceRecord]) -> None:
        """Each retrieved file at its instance's place, unless the listener has stored the
        instance there meanwhile (sent again: what was sent wins over PACS's copy)."""
        try:
            for uid, path in found.items():
                write_if_absent(missing[uid].path, _copy_of(path))
        except OSError as error:
            raise OSError(error.errno, f"storing them in the spool failed: {error.strerror}") from None


def _copy_of(path: Path) -> Callable[[BinaryIO], None]:
    """A writer of `path`'s bytes, for write_if_absent."""
    def copy(out: BinaryIO) -> None:
        with path.open("rb") as source:
            shutil.copyfileobj(source, out, 1024 * 1024)
    return copy


def _requests(missing: Iterable[InstanceRecord]) -> list[SeriesRequest]:
    """One request per series with a missing instance, for the whole series: one C-GET or
    WADO-RS call, not one per slice; what PACS adds beyond the missing instances is dropped."""
    series = sorted({(record.study_instance_uid, record.series_instance_uid) for record in missing})
    return [SeriesRequest(study_uid, series_uid) for study_uid, series_uid in series]
