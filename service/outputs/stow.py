"""DICOMweb delivery: STOW-RS of one instance to a PACS's DICOMweb base URL (dicomweb-client).

Many archives take DICOMweb rather than (or better than) C-STORE. Failures are DeliveryErrors
classified like the EHR's (service.outputs.ehr): a 4xx is the archive refusing this instance or
this URL, permanent, except 408 and 429 ("not now"); 5xx, timeouts and connection failures are
retried by the outbox, which persists attempts and backs off (dicomweb-client's own retrying is
off: service.outputs.dicomweb_access, which also holds the archive's credentials). A redirect is not followed
(requests would turn the POST into a GET and could take that GET's 200 for a delivery): the URL
is wrong, a permanent failure. A 200 whose response lists the instance under Failed SOP Sequence
is a refusal too (permanent, except "out of resources", A7xx, which is retried).

A 401 to a credential from a file (stow_bearer_token_file, stow_basic_auth_file: a mounted
Secret, read again when it changes) is retried, as the EHR's is (service.outputs.ehr): the
archive may take the rotated credential before kubelet updates the pod's copy. When the file
changed while the refused request was under way, the instance is sent again at once. A 403 (the
credential was understood, and is not allowed to store) and a credential given in the
configuration are refused for good, as before.

The study is not put in the URL (POST .../studies, not .../studies/{uid}): the archive reads it
from the instance, and dicomweb-client logs the URL's study UID at INFO. Error texts name the
HTTP status and the archive's failure reason code, never a UID.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import requests
from dicomweb_client import DICOMwebClient
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
        answer = _stored(client, dataset, archive)
    except requests.TooManyRedirects as error:  # max_redirects = 0: any redirect
        location = error.response.headers.get("Location", "?") if error.response is not None else "?"
        raise DeliveryError(f"STOW-RS answered {_status(error)}: redirected to {location}; configure the "
                            "DICOMweb URL the archive redirects to", permanent=True) from error
    except requests.HTTPError as error:
        code = error.response.status_code if error.response is not None else 0
        if code == 401 and archive.credential_file:
            raise DeliveryError(f"STOW-RS answered HTTP 401: the archive refused the credential from "
                                f"{archive.credential_file}, which is read again at each attempt") from error
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


def _stored(client: DICOMwebClient, dataset: pydicom.Dataset, archive: DicomwebAccess) -> pydicom.Dataset:
    """The archive's answer to the instance; sent again at once when the archive refused (401) a
    credential whose file has changed since."""
    try:
        return client.store_instances([dataset])
    except requests.HTTPError as error:
        refused = error.response
        if not (refused is not None and refused.status_code == 401 and archive.credential_file
                and refused.request.headers.get("Authorization") != archive.authorization()):
            raise
    return client.store_instances([dataset])


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
