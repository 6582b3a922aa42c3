"""How we authenticate to the EHR's FHIR server: a static bearer token, or SMART Backend
Services (the client-credentials grant with a signed JWT client assertion, SMART App Launch
2.x "Backend Services").

SMART: we sign an assertion (iss = sub = client_id, aud = the token endpoint, a fresh jti,
exp 5 minutes ahead; RS384 for an RSA key, ES384 for an EC P-384 key, as SMART requires
servers to support) with our private key, whose public half the EHR has registered, and trade
it at the token endpoint for an access token. The token is cached until a minute before it
expires, and dropped when the FHIR server answers 401 so that the next attempt gets a new one.
The token endpoint comes from the configuration, or from the server's
.well-known/smart-configuration when not configured.

Errors are DeliveryErrors: a refused client or scope (4xx from the token endpoint) is
permanent, with the server's OAuth error; an unreachable or failing endpoint (5xx, network) is
retried by the outbox like any delivery failure. Tokens and keys never reach the log.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from service.errors import ConfigError
from service.outputs.pacs import DeliveryError

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S = 300  # SMART: no more than five minutes in the future
_REFRESH_MARGIN_S = 60.0


class Authorization(Protocol):
    """What post_bundle needs: the Authorization header value, and a way to drop a stale one."""

    renewable: bool  # whether invalidate() can lead to a different token

    def header(self) -> str: ...

    def invalidate(self) -> None: ...


@dataclass(frozen=True)
class BearerToken:
    """A static token from the configuration (nothing to refresh)."""

    token: str
    renewable = False

    def header(self) -> str:
        return f"Bearer {self.token}"

    def invalidate(self) -> None:
        """A static token cannot be renewed: a 401 is then the server's final word."""


def _signing_algorithm(key: object) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS384"
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1":
        return "ES384"
    raise ConfigError("fhir_smart_private_key_file: SMART backend services need an RSA key (RS384) or an "
                      "EC P-384 key (ES384)")


def load_private_key(path: Path) -> tuple[object, str]:
    """The PEM private key and the algorithm it signs with; ConfigError saying what is wrong."""
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise ConfigError(f"fhir_smart_private_key_file: cannot load an unencrypted PEM private key from "
                          f"{path} ({type(error).__name__})") from None
    return key, _signing_algorithm(key)


class SmartBackendServices:
    """Access tokens by the client-credentials grant with a signed assertion, cached."""

    renewable = True

    def __init__(self, *, client_id: str, private_key_file: Path, scope: str, fhir_base_url: str,
                 token_url: str | None = None, key_id: str | None = None, timeout_s: float = 30.0) -> None:
        self._client_id = client_id
        self._key, self._algorithm = load_private_key(private_key_file)
        self._scope = scope
        self._fhir_base_url = fhir_base_url.rstrip("/")
        self._token_url = token_url
        self._key_id = key_id
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    def header(self) -> str:
        with self._lock:
            if self._token is None or time.time() >= self._expires_at - _REFRESH_MARGIN_S:
                self._token, lifetime = self._request_token()
                self._expires_at = time.time() + lifetime
            return f"Bearer {self._token}"

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def assertion(self, token_url: str) -> str:
        """The signed client assertion for one token request (a fresh jti every time)."""
        now = int(time.time())
        claims = {"iss": self._client_id, "sub": self._client_id, "aud": token_url, "jti": str(uuid.uuid4()),
                  "iat": now, "exp": now + ASSERTION_LIFETIME_S}
        headers = {"typ": "JWT", **({"kid": self._key_id} if self._key_id else {})}
        return jwt.encode(claims, self._key, algorithm=self._algorithm, headers=headers)

    def _request_token(self) -> tuple[str, float]:
        token_url = self._token_url or self._discover_token_url()
        form = urllib.parse.urlencode({
            "grant_type": "client_credentials", "scope": self._scope,
            "client_assertion_type": ASSERTION_TYPE, "client_assertion": self.assertion(token_url),
        }).encode()
        request = urllib.request.Request(token_url, data=form, method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
        answer = _json_call(request, self._timeout_s, "SMART token endpoint")
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise DeliveryError("SMART token endpoint answered without an access_token", permanent=True)
        return token, float(answer.get("expires_in") or 300)

    def _discover_token_url(self) -> str:
        request = urllib.request.Request(f"{self._fhir_base_url}/.well-known/smart-configuration",
                                         headers={"Accept": "application/json"})
        answer = _json_call(request, self._timeout_s, "SMART configuration")
        token_url = answer.get("token_endpoint")
        if not isinstance(token_url, str) or not token_url:
            raise DeliveryError("the FHIR server's .well-known/smart-configuration has no token_endpoint; "
                                "set fhir_smart_token_url", permanent=True)
        self._token_url = token_url
        return token_url


def _json_call(request: urllib.request.Request, timeout_s: float, what: str) -> dict:
    """A JSON answer, or a DeliveryError: permanent on 4xx (with the OAuth error), else retryable."""
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as error:
        detail = _oauth_error(error.read())
        raise DeliveryError(f"{what} answered {error.code}: {detail}", permanent=400 <= error.code < 500) from error
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise DeliveryError(f"{what} unreachable: {getattr(error, 'reason', error)}") from error
    except ValueError as error:
        raise DeliveryError(f"{what} answered with something that is not JSON") from error
    if not isinstance(answer, dict):
        raise DeliveryError(f"{what} answered with something that is not a JSON object")
    return answer


def _oauth_error(body: bytes) -> str:
    """"error: error_description" of an OAuth error answer, else the start of the body."""
    try:
        answer = json.loads(body)
        return f"{answer['error']}: {answer.get('error_description', '')}".rstrip(": ")
    except (ValueError, KeyError, TypeError):
        return body[:200].decode(errors="replace")
