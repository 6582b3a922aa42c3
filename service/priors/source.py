"""What a prior source must do: find the patient's SRs, fetch one. Nothing else.

Two questions are all the resolver asks of PACS, so that DICOMweb and DIMSE are
interchangeable and tried in the configured order. A source that cannot answer raises
PriorSourceError (the next source is tried); it never returns a partial answer as complete.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from pydicom.dataset import Dataset

from service.errors import PriorSourceError

logger = logging.getLogger(__name__)
Answer = TypeVar("Answer")


@dataclass(frozen=True, order=True)
class SrLocation:
    """Where one SR instance is, and the date of its study (for the lookback and the order)."""

    study_date: str
    study_time: str
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str


@dataclass(frozen=True)
class PatientQuery:
    """The query keys (patient data: never logged) and the study-date window, YYYYMMDD."""

    patient_id: str
    issuer_of_patient_id: str
    earliest_date: str
    latest_date: str


class PriorProvider(Protocol):
    """A source of our earlier SRs; `name` is its prior_providers name (for notes and logs)."""

    name: str

    def find(self, query: PatientQuery) -> list[SrLocation]:
        """Our SR instances (Modality SR, our Manufacturer) of the patient in the date window."""
        ...

    def fetch(self, location: SrLocation) -> Dataset:
        """The SR instance itself."""
        ...


Provider = TypeVar("Provider", bound=PriorProvider)


def first_answer(providers: Sequence[Provider], ask: Callable[[Provider], Answer],
                 purpose: str) -> tuple[Provider, Answer] | str:
    """Ask the sources in their configured order; the first that answers wins. When none does:
    each one's failure, joined (what the outputs report as "priors unavailable: ...")."""
    failures = []
    for provider in providers:
        try:
            return provider, ask(provider)
        except PriorSourceError as error:
            logger.warning("%s: prior source %s failed: %s", purpose, provider.name, error)
            failures.append(f"{provider.name}: {error}")
    return "; ".join(failures)
