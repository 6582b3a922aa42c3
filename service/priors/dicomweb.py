"""Priors over DICOMweb: QIDO-RS for the patient's SR series of ours, WADO-RS for each instance.

One QIDO-RS query at series level finds our SR series across all the patient's studies (no
study-level round trip), filtered by Modality SR and our Manufacturer, which Orthanc 1.10.1 with
its DICOMweb plugin 1.7 honours (another Manufacturer matches none); a second one per series
lists its instances. Retrieval is WADO-RS of the instance;
a series (a prior CT, a study to score again) is WADO-RS of the series, streamed: one instance
in memory at a time, each written to the retrieval's Landing as it arrives.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import TypeVar

import requests
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from urllib3.exceptions import ReadTimeoutError

from service.errors import PriorNotHeld, PriorSourceError
from service.outputs.codes import MANUFACTURER
from service.outputs.dicomweb_access import DicomwebAccess
from service.priors.retrieve import Landing, SeriesRequest
from service.priors.source import PatientQuery, SrLocation

_STUDY_DATE, _STUDY_TIME, _STUDY_UID, _SERIES_UID, _SOP_UID = (
    "00080020", "00080030", "0020000D", "0020000E", "00080018")


def _value(item: dict[str, dict], tag: str) -> str:
    """A DICOM JSON attribute's first value as text; "" when absent or empty."""
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


def _timed_out(error: requests.RequestException) -> bool:
    """requests raises Timeout for a connection or an answer that did not start in time, and a
    ConnectionError around urllib3's ReadTimeoutError for a body that stalled after its headers."""
    return isinstance(error, requests.Timeout) or any(isinstance(arg, ReadTimeoutError) for arg in error.args)


def _describe(error: requests.RequestException, attempts: int = 1) -> str:
    """The failure in words without the request's URL: its query string holds the patient ID."""
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    if isinstance(error, requests.HTTPError) and error.response is not None:
        status = error.response.status_code
        if status in (401, 403):  # in the study's notes too: words a reader follows, no setting names
            return f"HTTP {status} (the PACS wants credentials, or refused ours)"
        return f"HTTP {status}{tries}"
    if _timed_out(error):
        return "timed out"
    if isinstance(error, requests.exceptions.SSLError):
        return "TLS failed"
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return f"answer cut off{tries}"
    if isinstance(error, requests.ConnectionError):
        return f"connection failed (refused or unreachable){tries}"
    return type(error).__name__


RETRY_WAITS_S = (0.5, 1.0)
ATTEMPTS = len(RETRY_WAITS_S) + 1
"""A request refused, or answered 408, 429, 503 or 504, is tried ATTEMPTS times, these many
seconds apart. dicomweb-client's own retrying (5 attempts, 2 to 16 s apart) held every study's
priors lookup for 30 s per request while a PACS was down; three quick tries ride out a blip, and
longer outages are the business of the next source and of reconciliation, which scores the
study again once the PACS answers. Its retrying is switched off because it also retries a
request that timed out: a PACS that accepts connections and never answers then held a request
ATTEMPTS x prior_timeout_seconds. A timeout is not retried here: one wait of the timeout, then
the next source. Nor is a failed TLS handshake (a certificate that will not change). An answer
cut off midway is retried like a refusal (while nothing of a series has landed)."""
_RETRIABLE_STATUS = frozenset({408, 429, 503, 504})


def _retriable(error: requests.RequestException) -> bool:
    if _timed_out(error) or isinstance(error, requests.exceptions.SSLError):  # both are ConnectionErrors too
        return False
    if isinstance(error, requests.HTTPError):
        return error.response is not None and error.response.status_code in _RETRIABLE_STATUS
    return isinstance(error, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError))


def _not_held(error: requests.RequestException) -> bool:
    """The server answered that it has no such resource (404 Not Found, 410 Gone)."""
    return isinstance(error, requests.HTTPError) and error.response is not None and \
        error.response.status_code in (404, 410)


_T = TypeVar("_T")


def _retried(call: Callable[[], _T], what: str, may_retry: Callable[[], bool] = lambda: True) -> _T:
    """`call`, tried again after a refusal or a busy answer (RETRY_WAITS_S) while `may_retry()`;
    its failure as a PriorSourceError that names `what` (QIDO-RS, WADO-RS)."""
    attempt = 1
    while True:
        try:
            return call()
        except requests.RequestException as error:
            if attempt == ATTEMPTS or not _retriable(error) or not may_retry():
                failure = PriorNotHeld if _not_held(error) else PriorSourceError
                raise failure(f"DICOMweb {what} failed: {_describe(error, attempt)}") from None
        time.sleep(RETRY_WAITS_S[attempt - 1])
        attempt += 1


class DicomwebProvider:
    """QIDO-RS / WADO-RS with dicomweb-client at the PACS's DICOMweb root (e.g. .../dicom-web),
    with its credentials and CA file (service.outputs.dicomweb_access). One client for as long as
    the worker runs, shared by its threads: each request carries the credential as it is then, so
    a rotated credential file is sent from the next request on."""

    name = "dicomweb"

    def __init__(self, pacs: DicomwebAccess, timeout_s: float) -> None:
        self._client = pacs.client(timeout_s)  # its retrying off: _retried instead (RETRY_WAITS_S says why)

    def find(self, query: PatientQuery) -> list[SrLocation]:
        filters = {"PatientID": query.patient_id, "Modality": "SR", "Manufacturer": MANUFACTURER,
                   "StudyDate": f"{query.earliest_date}-{query.latest_date}"}
        if query.issuer_of_patient_id:
            filters["IssuerOfPatientID"] = query.issuer_of_patient_id
        series = _retried(lambda: self._client.search_for_series(
            search_filters=filters, fields=[_STUDY_DATE, _STUDY_TIME, _STUDY_UID], get_remaining=True), "QIDO-RS")
        return sorted(location for item in series for location in self._instances(item))

    def _instances(self, series: dict[str, dict]) -> list[SrLocation]:
        study_uid, series_uid = _value(series, _STUDY_UID), _value(series, _SERIES_UID)
        instances = _retried(lambda: self._client.search_for_instances(
            study_uid, series_uid, fields=[_SOP_UID], get_remaining=True), "QIDO-RS")
        return [SrLocation(_value(series, _STUDY_DATE), _value(series, _STUDY_TIME), study_uid, series_uid,
                           _value(instance, _SOP_UID)) for instance in instances]

    def fetch(self, location: SrLocation) -> Dataset:
        return _retried(lambda: self._client.retrieve_instance(
            location.study_instance_uid, location.series_instance_uid, location.sop_instance_uid), "WADO-RS")

    def retrieve(self, request: SeriesRequest, landing: Landing) -> None:
        """The series (or the instance) into `landing`, one instance in memory at a time; tried
        again only while nothing has landed (a series cut off halfway is a failure)."""
        landed = 0

        def land() -> None:
            nonlocal landed
            instances: Iterable[Dataset] = (
                self._client.iter_series(request.study_instance_uid, request.series_instance_uid)
                if request.sop_instance_uid is None else
                [self._client.retrieve_instance(request.study_instance_uid, request.series_instance_uid,
                                                request.sop_instance_uid)])
            for instance in instances:
                landing.write(request, partial(instance.save_as, enforce_file_format=True))
                landed += 1

        try:
            _retried(land, "WADO-RS", may_retry=lambda: landed == 0)
        except (InvalidDicomError, ValueError) as error:  # a part that is not DICOM, a body not multipart
            raise PriorSourceError(f"DICOMweb WADO-RS answer unreadable ({type(error).__name__})") from None
