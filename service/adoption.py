"""A stale later study that another ingest replica scored, taken over by this one (docs/architecture.md,
"Priors from PACS"): its baseline's SR reached PACS after it was scored, and this replica, which
scored the baseline, is the one that knows. The study's CT series and contour instance(s), as
its standing SR names them, are retrieved from PACS and enter this replica's spool and index
exactly as received instances do (durable, deduplicated by SOP Instance UID, assessed and
scored once by the worker); the standing SR is kept as the predecessor the new SR replaces.

Nothing of the study goes back to PACS but its new SR and FHIR Bundle: the outbox only ever
carries our own artefacts, never received images.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from service.dicom_limits import read_header
from service.durable import write_atomically
from service.errors import PriorSourceError, UnusableInstance
from service.ingest.index import InstanceRecord, StudyIndex
from service.ingest.scp import describe_instance, study_order
from service.ingest.spool import Spool, study_key
from service.priors.retrieve import RetrievalLimits, RetrievingProvider, evidence_requests, retrieve_series


class Adoption:
    """Retrieves stale studies into the spool and index; keeps the SR each one replaces."""

    def __init__(self, providers: Sequence[RetrievingProvider], index: StudyIndex, spool: Spool,
                 retrieve_dir: Path, reports_dir: Path, limits: RetrievalLimits = RetrievalLimits()) -> None:
        self._providers = providers
        self._index = index
        self._spool = spool
        self._retrieve_dir = retrieve_dir
        self._reports_dir = reports_dir
        self._limits = limits

    def adopt(self, standing_sr: Dataset) -> int:
        """Retrieve and index the study `standing_sr` reports; how many instances were new.
        PriorSourceError when PACS cannot give all of it, or gives something unusable; OSError or
        sqlite3.Error when the spool or index cannot take it: in each case nothing of it is
        indexed."""
        requests = evidence_requests(standing_sr)
        if not any(request.sop_instance_uid is None for request in requests):
            raise PriorSourceError("its report names no CT series")
        self._retrieve_dir.mkdir(parents=True, exist_ok=True)
        landing = Path(tempfile.mkdtemp(prefix="adopt-", dir=self._retrieve_dir))
        try:
            paths = retrieve_series(self._providers, requests, landing, self._limits)
            now = time.time()
            try:
                headers = [(read_header(path)[0], path) for path in paths]
                described = [(describe_instance(header, path, now), study_order(header)) for header, path in headers]
            except UnusableInstance as error:
                raise PriorSourceError(f"a retrieved instance is unusable: {error}") from None
            spooled = [(self._spool_one(record), order) for record, order in described]
            self._keep_report(standing_sr)  # before indexing: the worker may claim the study at once
            return sum(self._index.add_instances(spooled))
        finally:
            shutil.rmtree(landing, ignore_errors=True)

    def _spool_one(self, record: InstanceRecord) -> InstanceRecord:
        """Durable in the spool, as the listener stores an instance before indexing it. All are
        spooled before any is indexed, and indexed in one transaction with the patient's study
        order (so that the worker can find the patient's earlier studies): a failure part-way
        (a full disk) leaves nothing of the study indexed, only spool files that a retry
        overwrites."""
        with record.path.open("rb") as source:
            stored = self._spool.store(record.study_instance_uid, record.sop_instance_uid, source)
        return dataclasses.replace(record, path=stored)

    def _report_path(self, study_uid: str) -> Path:
        return self._reports_dir / f"{study_key(study_uid)}.dcm"

    def _keep_report(self, sr: Dataset) -> None:
        write_atomically(self._report_path(str(sr.StudyInstanceUID)),
                         lambda stream: sr.save_as(stream, enforce_file_format=True))

    def replaced_report(self, study_uid: str) -> Dataset | None:
        """The other replica's SR of an adopted study, which its first SR here replaces."""
        path = self._report_path(study_uid)
        try:
            return pydicom.dcmread(path, stop_before_pixels=True) if path.is_file() else None
        except (InvalidDicomError, OSError, ValueError):
            return None

    def forget(self, study_uid: str) -> None:
        """The adopted study has an SR of this replica's now (the index names it)."""
        self._report_path(study_uid).unlink(missing_ok=True)

    def remove_leftovers(self) -> None:
        """What an interrupted retrieval left (never indexed, so nothing is lost)."""
        shutil.rmtree(self._retrieve_dir, ignore_errors=True)
