"""FHIR delivery: POST the transaction Bundle to the EHR's FHIR base URL.

5xx answers and network failures are worth retrying; a 4xx is the server telling us the Bundle
is wrong, so it is a permanent failure that carries the server's OperationOutcome text, except
408 and 429, which say "not now" (timeout, rate limit) and are retried too. A redirect is not
followed (a POST must not turn into a GET): the base URL is wrong, a permanent failure. A 401 is
the authorisation's to judge (service.outputs.fhir_auth): sent again at once when it has another
token (SMART's next, a token file that has just changed), else final or retried as it says.
"""

from __future__ import annotations

import json
import re
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from service.outputs.fhir_auth import RETRYABLE_4XX, Authorization
from service.errors import ConfigError, DeliveryError
from service.tls import ClientTls



class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib would follow a 301/302/303 to a POST with a GET without the Bundle, and take that
    GET's 200 for a delivery; a redirect must surface as an HTTPError instead."""

    def redirect_request(self, *args, **kwargs) -> None:
        return None


def _opener(tls: ssl.SSLContext | None) -> urllib.request.OpenerDirector:
    """No redirects; https verified with `tls` (the EHR's CA, fhir_tls_ca_file) when given, else
    with the system's CAs."""
    if tls is None:
        return urllib.request.build_opener(_NoRedirect)
    return urllib.request.build_opener(_NoRedirect, urllib.request.HTTPSHandler(context=tls))


# "identifier=<system>|<value>": servers quote our conditional references, whose values are
# patient identifiers; the text goes to the log and the outbox database, so values are masked up to
# the next delimiter (a decoded value may contain spaces; the | may come URL-encoded as %7C).
_IDENTIFIER_VALUE = re.compile(r"(identifier=[^|\s]*?(?:\||%7C))[^&'\",;)\n]+", re.IGNORECASE)


def _outcome_text(body: bytes) -> str:
    """The diagnostics of an OperationOutcome (or the start of whatever the server said),
    with identifier values masked."""
    try:
        outcome = json.loads(body)
        issues = outcome.get("issue", []) if isinstance(outcome, dict) else []
        texts = [i.get("diagnostics") or i.get("details", {}).get("text", "") for i in issues]
        text = "; ".join(t for t in texts if t) or body[:300].decode(errors="replace")
    except ValueError:
        text = body[:300].decode(errors="replace")
    return _IDENTIFIER_VALUE.sub(r"\1<masked>", text)


def post_bundle(path: Path, base_url: str, authorization: Authorization | None = None,
                timeout_s: float = 60.0, tls: ClientTls | None = None) -> None:
    """POST a transaction Bundle to `base_url` (https verified against `tls`'s CA when given);
    DeliveryError (permanent when retrying cannot help) when it fails."""
    try:
        data = path.read_bytes()
    except OSError as error:  # removed or unreadable: no retry brings it back (re-writing re-enqueues)
        raise DeliveryError(f"cannot read {path}: {error.strerror or error}", permanent=True) from error
    try:
        context = tls.context() if tls is not None else None  # fresh per delivery: a renewed CA file applies
    except ConfigError as error:
        raise DeliveryError(f"TLS with the FHIR server not attempted: {error}") from None
    try:
        _post(data, base_url, authorization, timeout_s, context)
        return
    except _Unauthorized as refused:
        assert authorization is not None  # _post raises _Unauthorized only when authorised
        if not authorization.renew(refused.header):
            raise authorization.refusal(str(refused)) from None
    try:
        _post(data, base_url, authorization, timeout_s, context)
    except _Unauthorized as again:
        raise authorization.refusal(str(again)) from None


class _Unauthorized(Exception):
    """401 while authorised: the authorisation says whether to try again. `header` is the one
    refused (an attribute, not an argument: never in the exception's text)."""

    def __init__(self, detail: str, header: str) -> None:
        super().__init__(detail)
        self.header = header


def _post(data: bytes, base_url: str, authorization: Authorization | None, timeout_s: float,
          tls: ssl.SSLContext | None) -> None:
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    if authorization is not None:
        headers["Authorization"] = authorization.header()  # a token file's content as it is now
    request = urllib.request.Request(base_url.rstrip("/"), data=data, headers=headers, method="POST")
    try:
        with _opener(tls).open(request, timeout=timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as error:
        if 300 <= error.code < 400:  # the base URL is wrong: retrying the same one cannot help
            location = error.headers.get("Location", "?")
            raise DeliveryError(f"FHIR server answered {error.code}: redirected to {location}; configure "
                                "the FHIR base URL the server redirects to", permanent=True) from error
        detail = _outcome_text(error.read())
        if error.code == 401 and authorization is not None:
            raise _Unauthorized(detail, headers["Authorization"]) from error
        permanent = 400 <= error.code < 500 and error.code not in RETRYABLE_4XX
        raise DeliveryError(f"FHIR server answered {error.code}: {detail}", permanent=permanent) from error
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise DeliveryError(f"FHIR server unreachable: {getattr(error, 'reason', error)}") from error
