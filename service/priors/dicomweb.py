"""Priors over DICOMweb: QIDO-RS for the patient's SR series of ours, WADO-RS for each instance.

One QIDO-RS query at series level finds our SR series across all the patient's studies (no
study-level round trip), filtered by Modality SR and our Manufacturer as followup.md 3.3 verified
with Orthanc; a second one per series lists its instances. Retrieval is WADO-RS of the instance;
a series (a prior CT, a study to score again) is WADO-RS of the series, streamed: one instance
in memory at a time, each written to the retrieval's Landing as it arrives.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

import requests
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from retrying import RetryError

from service.errors import PriorSourceError
from service.outputs.codes import MANUFACTURER
from service.priors.retrieve import Landing, SeriesRequest
from service.priors.source import PatientQuery, SrLocation

_STUDY_DATE, _STUDY_TIME, _STUDY_UID, _SERIES_UID, _SOP_UID = (
    "00080020", "00080030", "0020000D", "0020000E", "00080018")


def _value(item: dict[str, dict], tag: str) -> str:
    """A DICOM JSON attribute's first value as text; "" when absent or empty."""
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


def _describe(error: requests.RequestException | RetryError) -> str:
    """The failure in words without the request's URL: its query string holds the patient ID.
    RetryError: dicomweb-client's retrying gave up on an answer it retries (408, 429, 503, 504);
    it raises that instead of the HTTPError a single attempt raises."""
    if isinstance(error, RetryError):
        answer = error.last_attempt.value
        status = f"HTTP {answer.status_code}" if isinstance(answer, requests.Response) else "no answer"
        return f"{status} after {error.last_attempt.attempt_number} attempts"
    if isinstance(error, requests.HTTPError) and error.response is not None:
        return f"HTTP {error.response.status_code}"
    if isinstance(error, requests.ConnectionError):
        return "connection failed (refused or unreachable)"
    if isinstance(error, requests.Timeout):
        return "timed out"
    return type(error).__name__


ATTEMPTS = 3
RETRY_MULTIPLIER_MS = 250
"""dicomweb-client retries a refused connection or an HTTP 408/429/503/504 with exponential
back-off, by default 5 attempts 2, 4, 8 and 16 s apart: a PACS that is down held every study's
priors lookup for 30 s per request before the next source (or "priors unavailable") was tried.
Three attempts 0.5 and 1 s apart ride out a blip; longer outages are the business of the next
source and of reconciliation, which scores the study again once the PACS answers. A timed-out
attempt is retried as well (dicomweb-client retries every exception), so a PACS that never
answers holds a request ATTEMPTS x the timeout (README, prior_dicomweb_url)."""


class DicomwebProvider:
    """QIDO-RS / WADO-RS with dicomweb-client at `url` (the DICOMweb root, e.g. .../dicom-web)."""

    name = "dicomweb"

    def __init__(self, url: str, timeout_s: float, session: requests.Session | None = None) -> None:
        self._client = DICOMwebClient(url, session=session, timeout=timeout_s)
        self._client.set_http_retry_params(max_attempts=ATTEMPTS, wait_exponential_multiplier=RETRY_MULTIPLIER_MS)

    def find(self, query: PatientQuery) -> list[SrLocation]:
        filters = {"PatientID": query.patient_id, "Modality": "SR", "Manufacturer": MANUFACTURER,
                   "StudyDate": f"{query.earliest_date}-{query.latest_date}"}
        if query.issuer_of_patient_id:
            filters["IssuerOfPatientID"] = query.issuer_of_patient_id
        try:
            series = self._client.search_for_series(
                search_filters=filters, fields=[_STUDY_DATE, _STUDY_TIME, _STUDY_UID], get_remaining=True)
            return sorted(location for item in series for location in self._instances(item))
        except (requests.RequestException, RetryError) as error:
            raise PriorSourceError(f"DICOMweb QIDO-RS failed: {_describe(error)}") from None

    def _instances(self, series: dict[str, dict]) -> list[SrLocation]:
        study_uid, series_uid = _value(series, _STUDY_UID), _value(series, _SERIES_UID)
        instances = self._client.search_for_instances(study_uid, series_uid, fields=[_SOP_UID], get_remaining=True)
        return [SrLocation(_value(series, _STUDY_DATE), _value(series, _STUDY_TIME), study_uid, series_uid,
                           _value(instance, _SOP_UID)) for instance in instances]

    def fetch(self, location: SrLocation) -> Dataset:
        try:
            return self._client.retrieve_instance(
                location.study_instance_uid, location.series_instance_uid, location.sop_instance_uid)
        except (requests.RequestException, RetryError) as error:
            raise PriorSourceError(f"DICOMweb WADO-RS failed: {_describe(error)}") from None

    def retrieve(self, request: SeriesRequest, landing: Landing) -> None:
        try:
            instances: Iterable[Dataset] = (
                self._client.iter_series(request.study_instance_uid, request.series_instance_uid)
                if request.sop_instance_uid is None else
                [self._client.retrieve_instance(request.study_instance_uid, request.series_instance_uid,
                                                request.sop_instance_uid)])
            for instance in instances:
                landing.write(request, partial(instance.save_as, enforce_file_format=True))
        except (requests.RequestException, RetryError) as error:
            raise PriorSourceError(f"DICOMweb WADO-RS failed: {_describe(error)}") from None
        except (InvalidDicomError, ValueError) as error:  # a part that is not DICOM, a body not multipart
            raise PriorSourceError(f"DICOMweb WADO-RS answer unreadable ({type(error).__name__})") from None
