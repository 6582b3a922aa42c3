"""Series from PACS through the prior providers: the prior CT a registration needs and a stale
later study that another replica scored (docs/architecture.md, "Priors from PACS").

PACS is the one place every replica can get them from, so nothing is shared between pods. What
is retrieved lands in a private directory (never the spool: fetched instances enter no queue by
themselves), one instance at a time, each written to disk as it arrives and checked against the
instance limits (service.dicom_limits) and against what was asked for; a retrieval stops at
MAX_INSTANCES instances or MAX_BYTES bytes. A source that fails (or breaks a limit) raises
PriorSourceError, its files are removed, and the next source is tried (first_answer).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from pydicom.dataset import Dataset

from service.dicom_limits import InstanceLimits, check_instance, read_header
from service.errors import InstanceBudgetError, PriorNotHeld, PriorSourceError
from service.priors.source import PriorProvider, first_answer
from service.sop_classes import CONTOUR_SOP_CLASSES, CT_SOP_CLASSES

# A CT series at 0.5 mm over a whole body has about 4,000 slices; 20,000 instances and 16 GiB
# bound a PACS answering with far more than one series while admitting any clinical one.
MAX_INSTANCES = 20_000
MAX_BYTES = 16 * 1024**3


@dataclass(frozen=True)
class SeriesRequest:
    """A series to retrieve, or (with `sop_instance_uid`) one instance of it."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str | None = None


@dataclass(frozen=True)
class RetrievalLimits:
    """Per retrieval: instances, bytes, and each instance's limits (the listener's)."""

    instance: InstanceLimits = InstanceLimits()
    max_instances: int = MAX_INSTANCES
    max_bytes: int = MAX_BYTES


class Landing:
    """The directory one retrieval writes into: each instance streamed to its own file, counted
    against the limits while it is written, then checked (limits, and that it was asked for)."""

    def __init__(self, directory: Path, limits: RetrievalLimits) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.limits = limits
        self.paths: list[Path] = []
        self.bytes = 0

    def write(self, request: SeriesRequest, writer: Callable[[BinaryIO], None]) -> Path:
        """One arriving instance: `writer` writes its DICOM file; PriorSourceError when a limit
        is broken or PACS sent something other than what `request` asked for."""
        if len(self.paths) >= self.limits.max_instances:
            raise PriorSourceError(f"retrieval stopped: more than {self.limits.max_instances} instances")
        path = self.directory / f"{len(self.paths):06d}.dcm"
        self.paths.append(path)
        try:
            with path.open("wb") as stream:
                writer(_Budget(stream, self))  # type: ignore[arg-type]  # a write-only stream
        except Exception as error:
            if self.bytes > self.limits.max_bytes:  # raised by _Budget (pydicom's writer rewords errors)
                raise PriorSourceError(f"retrieval stopped: more than {self.limits.max_bytes} bytes") from None
            if isinstance(error, OSError):  # a full disk: the study goes on without what was retrieving
                raise PriorSourceError(f"cannot store a retrieved instance ({error.strerror or error})") from None
            raise
        try:
            header, pixel_data = read_header(path)
            check_instance(header, pixel_data, self.limits.instance)
        except InstanceBudgetError as error:
            raise PriorSourceError(f"retrieved instance refused: {error}") from None
        except Exception as error:  # pydicom raises many types for damaged files
            raise PriorSourceError(f"retrieved instance unreadable ({type(error).__name__})") from None
        if not _answers(header, request):
            raise PriorSourceError("PACS returned an instance that was not asked for")
        return path

    def clear(self) -> None:
        """Remove everything retrieved (a source failed, or the caller is done with it)."""
        shutil.rmtree(self.directory, ignore_errors=True)
        self.paths, self.bytes = [], 0


class _Budget:
    """A write-only stream that counts the retrieval's bytes and stops it past the limit."""

    def __init__(self, stream: BinaryIO, landing: Landing) -> None:
        self._stream, self._landing = stream, landing

    def write(self, data: bytes) -> int:
        self._landing.bytes += len(data)
        if self._landing.bytes > self._landing.limits.max_bytes:
            raise PriorSourceError("retrieval over its byte limit")
        return self._stream.write(data)

    def tell(self) -> int:  # pydicom's writer asks where it is
        return self._stream.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._stream.seek(offset, whence)

    def flush(self) -> None:
        self._stream.flush()


def _answers(header: Dataset, request: SeriesRequest) -> bool:
    return (str(header.get("StudyInstanceUID", "")) == request.study_instance_uid
            and str(header.get("SeriesInstanceUID", "")) == request.series_instance_uid
            and request.sop_instance_uid in (None, str(header.get("SOPInstanceUID", ""))))


@runtime_checkable
class RetrievingProvider(PriorProvider, Protocol):
    """A prior source that can also retrieve images (DICOMweb WADO-RS, DIMSE C-GET)."""

    def retrieve(self, request: SeriesRequest, landing: Landing) -> None:
        """Write every instance `request` names into `landing` (Landing.write per instance)."""
        ...


def retrieving(providers: Sequence[PriorProvider]) -> list[RetrievingProvider]:
    """The sources that can retrieve images, in their configured order."""
    return [provider for provider in providers if isinstance(provider, RetrievingProvider)]


def retrieve_series(providers: Sequence[RetrievingProvider], requests: Sequence[SeriesRequest], directory: Path,
                    limits: RetrievalLimits = RetrievalLimits()) -> list[Path]:
    """Every request retrieved into `directory` by the first source that delivers them all (the
    file paths); PriorSourceError with each source's failure when none does. A request that
    yields no instance is a failure: PACS does not (or no longer) hold it. PriorNotHeld when
    every source answered that it does not hold something asked for (asking again will not help)."""
    not_held: list[RetrievingProvider] = []

    def ask(provider: RetrievingProvider) -> list[Path]:
        landing = Landing(directory, limits)
        try:
            for request in requests:
                before = len(landing.paths)
                provider.retrieve(request, landing)
                if len(landing.paths) == before:
                    raise PriorNotHeld("PACS holds no instance of a requested series")
        except BaseException as error:
            if isinstance(error, PriorNotHeld):
                not_held.append(provider)
            landing.clear()
            raise
        return landing.paths

    if not providers:
        raise PriorSourceError("no prior source can retrieve images")
    answer = first_answer(providers, ask, "retrieval")
    if isinstance(answer, str):
        raise (PriorNotHeld if len(not_held) == len(providers) else PriorSourceError)(answer)
    return answer[1]


def evidence_requests(sr: Dataset) -> list[SeriesRequest]:
    """What to retrieve to score again the study one of our SRs reports: the CT series whole and
    the contour instance(s), as its Current Requested Procedure Evidence names them."""
    requests = []
    for study in sr.get("CurrentRequestedProcedureEvidenceSequence") or []:
        for series in study.get("ReferencedSeriesSequence") or []:
            items = series.get("ReferencedSOPSequence") or []
            classes = {str(item.get("ReferencedSOPClassUID", "")) for item in items}
            if classes & CT_SOP_CLASSES:
                requests.append(SeriesRequest(str(study.StudyInstanceUID), str(series.SeriesInstanceUID)))
            requests += [SeriesRequest(str(study.StudyInstanceUID), str(series.SeriesInstanceUID),
                                       str(item.ReferencedSOPInstanceUID))
                         for item in items if str(item.get("ReferencedSOPClassUID", "")) in CONTOUR_SOP_CLASSES]
    return requests
