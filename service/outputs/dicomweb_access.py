"""How we reach a DICOMweb server: an archive we STOW-RS our results to (service.outputs.stow),
or a PACS we look priors up in by QIDO-RS and WADO-RS (service.priors.dicomweb).

Real servers ask for credentials: Orthanc and many archives behind a web server for HTTP Basic,
others (dcm4chee with Keycloak, cloud healthcare APIs) for a bearer token. Either goes over
https only (plain http on loopback, for a sidecar or a test), and the server's certificate is
verified against the site's CA file when one is given. Clients are built with dicomweb-client's
session_utils, as its documentation suggests, with its own retrying off: the outbox retries
deliveries, and prior lookups retry in service.priors.dicomweb. STOW-RS builds a client per
delivery; the priors source builds one when the worker starts and its threads share it.

A credential from a file (a mounted Secret) is read again when the file changes
(service.secret_file). So that a client shared for as long as the worker runs sends a rotated
one too, the Authorization header is set on each request from the credential as it is then
(the session's auth), not once into the client's headers.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicomweb_client import DICOMwebClient
from dicomweb_client.session_utils import add_certs_to_session, create_session, create_session_from_auth
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

from service.config import Config
from service.outputs.fhir_auth import require_https
from service.secret_file import Credential, SecretFile, current
from service.tls import ClientTls


@dataclass(frozen=True)
class DicomwebAccess:
    """A DICOMweb base URL (e.g. https://pacs.example/dicom-web) and what it takes to use it.
    `basic_auth` is "user:password" (RFC 7617: the user has no colon); either credential given
    as it is, or followed in its file. Neither is in the repr, so neither reaches a traceback or
    a log line."""

    url: str
    bearer_token: Credential | None = field(default=None, repr=False)
    basic_auth: Credential | None = field(default=None, repr=False)
    ca_file: Path | None = None

    @classmethod
    def configured(cls, config: Config, url: str, prefix: str) -> DicomwebAccess:
        """The access the settings `<prefix>_bearer_token`, `<prefix>_basic_auth` (each perhaps
        from its file) and `<prefix>_tls_ca_file` describe for `url` (service.config has checked
        their form), checked now so that a start fails rather than every request: credentials
        need https (except on loopback), and the CA file must load."""
        access = cls(url, config.credential(f"{prefix}_bearer_token"), config.credential(f"{prefix}_basic_auth"),
                     getattr(config, f"{prefix}_tls_ca_file"))
        if access.bearer_token or access.basic_auth:
            require_https(url, f"{prefix}_url (with credentials)")
        if access.ca_file is not None:
            ClientTls(access.ca_file, names=(f"{prefix}_tls_ca_file", "", "")).context()
        return access

    def __post_init__(self) -> None:
        if self.bearer_token and self.basic_auth:  # service.config refuses this; a caller in code must too
            raise ValueError("a DICOMweb server gets a bearer token or Basic credentials, not both")

    def authorization(self) -> str | None:
        """The Authorization header for the credential as it is now; None without one."""
        if self.bearer_token:
            return f"Bearer {current(self.bearer_token)}"
        if self.basic_auth:
            # UTF-8, as RFC 7617 advises; requests would encode text as Latin-1 (or fail on a €)
            return "Basic " + base64.b64encode(current(self.basic_auth).encode()).decode()
        return None

    @property
    def credential_file(self) -> str | None:
        """The setting of the file the credential is followed in; None when it was given as it
        is, or there is none. A refusal of a credential from a file may end with its rotation."""
        credential = self.bearer_token or self.basic_auth
        return credential.setting if isinstance(credential, SecretFile) else None

    def client(self, timeout_s: float, *, follow_redirects: bool = True) -> DICOMwebClient:
        """A fresh client. `follow_redirects` False: a redirect raises requests.TooManyRedirects
        (a STOW-RS POST that requests would turn into a GET)."""
        session = (create_session_from_auth(_AuthorizationAsNow(self)) if self.bearer_token or self.basic_auth
                   else create_session())
        if not follow_redirects:
            session.max_redirects = 0
        if self.ca_file is not None:
            add_certs_to_session(session, ca_bundle=str(self.ca_file))
            session.mount("https://", _SiteCaAdapter(self.ca_file))
        client = DICOMwebClient(self.url, session=session, timeout=timeout_s)
        client.set_http_retry_params(retry=False)
        return client


class _AuthorizationAsNow(AuthBase):
    """Each request's Authorization header from the access's credential as it is then. requests
    drops it on a redirect to another host, as it does a header set once."""

    def __init__(self, access: DicomwebAccess) -> None:
        self._access = access

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        header = self._access.authorization()
        assert header is not None  # a session gets this auth only with a credential
        request.headers["Authorization"] = header
        return request


class _SiteCaAdapter(HTTPAdapter):
    """Verifies against the site's CA file whatever the environment says: requests lets
    REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE replace a session's own `verify` (psf/requests#3829),
    so a site CA bundle set for other tools would silently take the configured file's place."""

    def __init__(self, ca_file: Path) -> None:
        super().__init__()
        self._ca_file = str(ca_file)

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        kwargs["verify"] = self._ca_file
        return super().send(request, *args, **kwargs)
