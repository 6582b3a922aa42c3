"""DICOMweb delivery: STOW-RS of one instance to a PACS's DICOMweb base URL (dicomweb-client).

Many archives take DICOMweb rather than (or better than) C-STORE. Failures are DeliveryErrors
classified like the EHR's (service.outputs.ehr): a 4xx is the archive refusing this instance or
this URL, permanent, except 408 and 429 ("not now"); 5xx, timeouts and connection failures are
retried by the outbox, which persists attempts and backs off (dicomweb-client's own retrying is
off: service.outputs.dicomweb_access, which also holds the archive's credentials). A redirect is not followed
(requests would turn the POST into a GET and could take that GET's 200 for a delivery): the URL
is wrong, a permanent failure. A 200 whose response lists the instance under Failed SOP Sequence
is a refusal too (permanent, except "out of resources", A7xx, which is retried).

The study is not put in the URL (POST .../studies, not .../studies/{uid}): the archive reads it
from the instance, and dicomweb-client logs the URL's study UID at INFO. Error texts name the
HTTP status and the archive's failure reason code, never a UID.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import requests
from pydicom.errors import InvalidDicomError

from service.errors import DeliveryError
from service.outputs.dicomweb_access import DicomwebAccess
from service.outputs.fhir_auth import RETRYABLE_4XX

_OUT_OF_RESOURCES = 0xA700
"""PS3.18 STOW-RS failure reasons A7xx: the archive is full or busy, worth retrying later."""


def store_instance(path: Path, archive: DicomwebAccess, timeout_s: float = 60.0) -> None:
    """STOW-RS the DICOM file at `path` to the archive's DICOMweb base URL (e.g. .../dicom-web);
    DeliveryError (permanent when retrying cannot help) when the archive did not take it."""
    try:
        dataset = pydicom.dcmread(path)
    except (OSError, InvalidDicomError) as error:  # removed or broken: no retry brings it back
        raise DeliveryError(f"cannot read {path.name}: {getattr(error, 'strerror', None) or error}",
                            permanent=True) from error
    client = archive.client(timeout_s, follow_redirects=False)
    try:
        answer = client.store_instances([dataset])
    except requests.TooManyRedirects as error:  # max_redirects = 0: any redirect
        location = error.response.headers.get("Location", "?") if error.response is not None else "?"
        raise DeliveryError(f"STOW-RS answered {_status(error)}: redirected to {location}; configure the "
                            "DICOMweb URL the archive redirects to", permanent=True) from error
    except requests.HTTPError as error:
        code = error.response.status_code if error.response is not None else 0
        permanent = 400 <= code < 500 and code not in RETRYABLE_4XX
        wants = (": the archive refused our credentials or wants some (stow_basic_auth or stow_bearer_token)"
                 if code in (401, 403) else "")
        raise DeliveryError(f"STOW-RS answered HTTP {code}{wants}", permanent=permanent) from error
    except requests.Timeout as error:
        raise DeliveryError("STOW-RS timed out") from error
    except requests.ConnectionError as error:
        raise DeliveryError(f"STOW-RS archive unreachable: {_connection_failure(error)}") from error
    except requests.RequestException as error:
        raise DeliveryError(f"STOW-RS failed: {type(error).__name__}") from error
    _check_answer(answer)


def _check_answer(answer: pydicom.Dataset) -> None:
    """A 2xx whose Store Instances Response still lists the instance as failed."""
    failed = answer.get("FailedSOPSequence") or []
    if not failed:
        return
    reason = int(failed[0].get("FailureReason", 0))
    permanent = reason & 0xFF00 != _OUT_OF_RESOURCES
    raise DeliveryError(f"STOW-RS archive refused the instance (failure reason {reason:04X}H)", permanent=permanent)


def _status(error: requests.RequestException) -> str:
    return f"HTTP {error.response.status_code}" if error.response is not None else "a redirect"


def _connection_failure(error: requests.ConnectionError) -> str:
    """Why, without the URL (requests' messages quote it, with the host's internals)."""
    if isinstance(error, requests.exceptions.SSLError):
        return "TLS failed (is stow_tls_ca_file the archive's CA?)"
    return "connection refused or host unreachable"
