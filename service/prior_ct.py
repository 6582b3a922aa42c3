"""The service's prior CTs: retrieved from PACS through the prior sources when a registration
needs one (service.prior_frames asks only then), read as `score --prior-ct` reads a directory,
and removed from disk once read.

Each call retrieves into its own fresh directory under `<var>/retrieved/`, so concurrent studies
never share files; whatever a crash left there is removed when the worker starts.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from service.errors import InputError, PriorSourceError
from service.imaging.volume import read_ct_directory
from service.model import CtSeries
from service.priors.retrieve import RetrievalLimits, RetrievingProvider, SeriesRequest, retrieve_series

log = logging.getLogger(__name__)


class RetrievedPriorCt:
    """A PriorCtSource (service.prior_frames) over the PACS sources that retrieve images."""

    def __init__(self, providers: Sequence[RetrievingProvider], directory: Path,
                 limits: RetrievalLimits = RetrievalLimits()) -> None:
        self._providers = providers
        self._directory = directory
        self._limits = limits

    def __call__(self, study_uid: str, series_uid: str | None) -> CtSeries | None:
        """The prior CT series; PriorSourceError (why) when it cannot be had."""
        if series_uid is None:
            raise PriorSourceError("the prior report names no CT series")
        self._directory.mkdir(parents=True, exist_ok=True)
        landing = Path(tempfile.mkdtemp(prefix="prior-ct-", dir=self._directory))
        try:
            retrieve_series(self._providers, [SeriesRequest(study_uid, series_uid)], landing, self._limits)
            ct = read_ct_directory(landing)
        except InputError as error:
            raise PriorSourceError(f"the retrieved prior CT is unusable: {error}") from None
        finally:
            shutil.rmtree(landing, ignore_errors=True)
        log.info("prior CT retrieved for a registration: %d slices", len(ct.sop_instance_uids))
        return ct
