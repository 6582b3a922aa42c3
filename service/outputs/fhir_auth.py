"""How we authenticate to the EHR's FHIR server: a static bearer token, or SMART Backend
Services (the client-credentials grant with a signed JWT client assertion, SMART App Launch
2.x "Backend Services").

A static token given in the configuration cannot change: the EHR's 401 is its final word. One
from a file (fhir_bearer_token_file, a mounted Secret) is read again when the file changes
(service.secret_file), and a 401 is retried by the outbox: the EHR may already take the rotated
token while the pod's copy of the Secret is a minute or two behind.

SMART: we sign an assertion (iss = sub = client_id, aud = the token endpoint, a fresh jti,
exp 4 minutes ahead, within SMART's 5 allowing for clock skew; RS384 for an RSA key, ES384 for an EC P-384 key, as SMART requires
servers to support) with our private key, whose public half the EHR has registered, and trade
it at the token endpoint for an access token. The token is cached until a minute before it
expires, and dropped when the FHIR server answers 401 so that the next attempt gets a new one.
The token endpoint comes from the configuration, or from the server's
.well-known/smart-configuration when not configured; both, and the FHIR base, must be https
except on loopback. The JWT's kid is the configured key id, else the key's RFC 7638 thumbprint.
The private key file (a mounted Secret) is followed like a token file (service.secret_file):
each new assertion is signed with the key the file holds then, so a key rotated at the EHR
(the new public key registered, the Secret updated, then the old key removed) needs no restart;
a file that holds no usable key for a moment keeps the last good key signing, with one WARNING.
A key read at start alone signed on after the rotation, and once the EHR dropped the old key
every token request was refused, as a permanent error, until someone restarted the service.

Errors are DeliveryErrors: a refused client or scope (4xx from the token endpoint) is
permanent, with the server's OAuth error; an unreachable or failing endpoint (5xx, 408, 429,
network) is retried by the outbox like any delivery failure. Tokens and keys never reach the log.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol, cast

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from service.errors import ConfigError, DeliveryError
from service.secret_file import SecretFile
from service.tls import ClientTls

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S = 240  # SMART: at most five minutes ahead; a minute left for clock skew
_REFRESH_MARGIN_S = 60.0
RETRYABLE_4XX = frozenset({408, 429})
"""Request Timeout, Too Many Requests: the server asks us to come back, not to change anything."""
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})

log = logging.getLogger(__name__)


class Authorization(Protocol):
    """What post_bundle needs: the Authorization header value, and what to do when the FHIR
    server answers 401 to it."""

    def header(self) -> str: ...

    def renew(self, refused: str) -> bool:
        """After a 401 to the header `refused`: True when header() now gives another one, worth
        sending at once."""
        ...

    def refusal(self, detail: str) -> DeliveryError:
        """The delivery's error when the server refused (`detail`: its OperationOutcome text) and
        there is nothing new to send now: permanent, unless a later attempt may bring another token."""
        ...


@dataclass(frozen=True)
class BearerToken:
    """A static token from the configuration (nothing to renew)."""

    token: str = field(repr=False)  # never in a traceback or a log line

    def header(self) -> str:
        return f"Bearer {self.token}"

    def renew(self, refused: str) -> bool:
        return False

    def refusal(self, detail: str) -> DeliveryError:
        """The same token will be refused again: the server's final word."""
        return DeliveryError(f"FHIR server answered 401: {detail}", permanent=True)


@dataclass(frozen=True)
class BearerTokenFile:
    """A static token from a file (fhir_bearer_token_file), read again when the file changes."""

    token: SecretFile

    def header(self) -> str:
        return f"Bearer {self.token.value()}"

    def renew(self, refused: str) -> bool:
        """The file changed while the request was under way: its new token is sent at once."""
        return self.header() != refused

    def refusal(self, detail: str) -> DeliveryError:
        """Retried, not final: the EHR may already want the rotated token while the pod's copy of
        the Secret is a minute or two behind (kubelet's sync). A token that stays wrong runs the
        delivery out of attempts, which is given up and alerts like a permanent failure."""
        return DeliveryError(f"FHIR server answered 401: it refused the token from {self.token.setting} "
                             f"({self.token.path}), which is read again at each attempt: {detail}")


# The private keys SMART backend services sign with: RSA (RS384) or EC P-384 (ES384).
SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _signing_algorithm(key: object) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS384"
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1":
        return "ES384"
    raise ConfigError("fhir_smart_private_key_file: SMART backend services need an RSA key (RS384) or an "
                      "EC P-384 key (ES384)")


_KEY_SETTING = "fhir_smart_private_key_file"


def _read_key_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{_KEY_SETTING}: cannot read {path} ({error.strerror or error})") from None


def _private_key(pem: bytes, path: Path) -> tuple[SigningKey, str]:
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise ConfigError(f"{_KEY_SETTING}: cannot load an unencrypted PEM private key from "
                          f"{path} ({type(error).__name__})") from None
    return cast(SigningKey, key), _signing_algorithm(key)  # _signing_algorithm refuses any other key


class _Signing(NamedTuple):
    """What one assertion is signed with: the key, its algorithm and the JWT's kid."""

    key: SigningKey
    algorithm: str
    key_id: str


def _thumbprint(signing: _Signing) -> str:
    """Which key it is, whatever its file's encoding (PKCS#1 or PKCS#8, line breaks)."""
    return jwk_thumbprint(signing.key.public_key())


class _FollowedKey:
    """The signing key in the private key file, as the file holds it now (service.secret_file
    follows the file's text); its kid: the configured one, else its thumbprint."""

    def __init__(self, path: Path, key_id: str | None) -> None:
        self._configured_kid = key_id
        pem = _read_key_file(path)
        self._signing = self._signing_with(*_private_key(pem, path))  # at start: a bad key stops the start
        self._pem = pem.decode("ascii", errors="replace").strip()  # as the SecretFile gives it
        self._file = SecretFile(path, _KEY_SETTING, self._pem)
        self._refused_pem: str | None = None
        self._lock = threading.Lock()

    def _signing_with(self, key: SigningKey, algorithm: str) -> _Signing:
        return _Signing(key, algorithm, self._configured_kid or jwk_thumbprint(key.public_key()))

    def current(self) -> _Signing:
        """The file's key if the file changed to one that loads, else the last good one (a file
        holding something else: one WARNING per content)."""
        with self._lock:
            pem = self._file.value()
            if pem != self._pem and pem != self._refused_pem:
                try:
                    signing = self._signing_with(*_private_key(pem.encode("ascii", errors="replace"),
                                                               self._file.path))
                except ConfigError as error:
                    log.warning("%s; the key read before signs until the file holds a usable one", error)
                    self._refused_pem = pem
                else:
                    if self._configured_kid and _thumbprint(signing) != _thumbprint(self._signing):
                        log.warning("%s changed while fhir_smart_key_id is set: the new key signs under the "
                                    "same kid; an EHR that holds both keys needs a new fhir_smart_key_id "
                                    "(a restart)", _KEY_SETTING)
                    self._pem, self._refused_pem, self._signing = pem, None, signing
            return self._signing


def require_https(url: str, what: str) -> None:
    """The assertion and the access token must not cross a network in clear: https, except on
    loopback (a local test server or a sidecar)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "https" and parsed.hostname not in _LOOPBACK_HOSTS:
        raise ConfigError(f"{what} must be an https URL (plain http only on loopback): {url}")


def jwk_thumbprint(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> str:
    """RFC 7638 thumbprint of a public key: the `kid` when none is configured, so an EHR that
    holds several keys for us (key rotation) can tell which one signed."""
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public_key) if isinstance(public_key, rsa.RSAPublicKey)
                        else jwt.algorithms.ECAlgorithm.to_jwk(public_key))
    members = ("e", "kty", "n") if public["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({name: public[name] for name in members}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


class SmartBackendServices:
    """Access tokens by the client-credentials grant with a signed assertion, cached."""

    def __init__(self, *, client_id: str, private_key_file: Path, scope: str, fhir_base_url: str,
                 token_url: str | None = None, key_id: str | None = None, timeout_s: float = 30.0,
                 tls: ClientTls | None = None) -> None:
        for name, url in (("fhir_base_url", fhir_base_url), ("fhir_smart_token_url", token_url)):
            if url is not None:
                require_https(url, name)
        self._client_id = client_id
        self._key = _FollowedKey(private_key_file, key_id)
        self._scope = scope
        self._fhir_base_url = fhir_base_url.rstrip("/")
        self._token_url = token_url
        self._timeout_s = timeout_s
        self._tls = tls  # the EHR's CA (fhir_tls_ca_file) for its token endpoint too
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0

    def header(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._renew_at:
                self._token, lifetime = self._request_token()
                self._renew_at = time.monotonic() + lifetime - min(_REFRESH_MARGIN_S, lifetime / 2)
            return f"Bearer {self._token}"

    def renew(self, refused: str) -> bool:
        """Revoked before its expiry, say: dropped, so that header() fetches a new one."""
        with self._lock:
            self._token = None
        return True

    def refusal(self, detail: str) -> DeliveryError:
        """A token the EHR has just issued refused: its client or scope is wrong, not its age."""
        return DeliveryError(f"FHIR server answered 401 with a new access token: {detail}", permanent=True)

    def assertion(self, token_url: str) -> str:
        """The signed client assertion for one token request (a fresh jti every time), signed
        with the key the private key file holds now."""
        now = int(time.time())
        claims = {"iss": self._client_id, "sub": self._client_id, "aud": token_url, "jti": str(uuid.uuid4()),
                  "iat": now, "exp": now + ASSERTION_LIFETIME_S}
        signing = self._key.current()
        headers = {"typ": "JWT", "kid": signing.key_id}
        return jwt.encode(claims, signing.key, algorithm=signing.algorithm, headers=headers)

    def _request_token(self) -> tuple[str, float]:
        token_url = self._token_url or self._discover_token_url()
        form = urllib.parse.urlencode({
            "grant_type": "client_credentials", "scope": self._scope,
            "client_assertion_type": ASSERTION_TYPE, "client_assertion": self.assertion(token_url),
        }).encode()
        request = urllib.request.Request(token_url, data=form, method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
        answer = _json_call(request, self._timeout_s, "SMART token endpoint", self._tls)
        token, lifetime = answer.get("access_token"), answer.get("expires_in", 300)
        if not isinstance(token, str) or not token:
            raise DeliveryError("SMART token endpoint answered without an access_token", permanent=True)
        if not isinstance(lifetime, (int, float)) or lifetime <= 0:
            raise DeliveryError(f"SMART token endpoint answered expires_in {lifetime!r}, not a positive number",
                                permanent=True)
        return token, float(lifetime)

    def _discover_token_url(self) -> str:
        request = urllib.request.Request(f"{self._fhir_base_url}/.well-known/smart-configuration",
                                         headers={"Accept": "application/json"})
        answer = _json_call(request, self._timeout_s, "SMART configuration", self._tls)
        token_url = answer.get("token_endpoint")
        if not isinstance(token_url, str) or not token_url:
            raise DeliveryError("the FHIR server's .well-known/smart-configuration has no token_endpoint; "
                                "set fhir_smart_token_url", permanent=True)
        try:
            require_https(token_url, "the discovered token_endpoint")
        except ConfigError as error:
            raise DeliveryError(str(error), permanent=True) from None
        self._token_url = token_url
        return token_url


def _json_call(request: urllib.request.Request, timeout_s: float, what: str, tls: ClientTls | None) -> dict:
    """A JSON answer, or a DeliveryError: permanent on 4xx (with the OAuth error), else retryable."""
    try:
        context = tls.context() if tls is not None else None
    except ConfigError as error:
        raise DeliveryError(f"TLS with the {what} not attempted: {error}") from None
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as error:
        detail = _oauth_error(error.read())
        permanent = 400 <= error.code < 500 and error.code not in RETRYABLE_4XX
        raise DeliveryError(f"{what} answered {error.code}: {detail}", permanent=permanent) from error
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
