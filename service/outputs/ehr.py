"""FHIR delivery: POST the transaction Bundle to the EHR's FHIR base URL.

5xx answers and network failures are worth retrying; a 4xx is the server telling us the Bundle
is wrong, so it is a permanent failure that carries the server's OperationOutcome text.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from service.outputs.pacs import DeliveryError


def _outcome_text(body: bytes) -> str:
    """The diagnostics of an OperationOutcome, or the start of whatever the server said."""
    try:
        outcome = json.loads(body)
        issues = outcome.get("issue", []) if isinstance(outcome, dict) else []
        texts = [i.get("diagnostics") or i.get("details", {}).get("text", "") for i in issues]
        return "; ".join(t for t in texts if t) or body[:300].decode(errors="replace")
    except ValueError:
        return body[:300].decode(errors="replace")


def post_bundle(path: Path, base_url: str, bearer_token: str | None = None, timeout_s: float = 60.0) -> None:
    """POST a transaction Bundle to `base_url`; DeliveryError (permanent on 4xx) when it fails."""
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    if bearer_token:
        headers["Authorization"] = f"Bearer {bearer_token}"
    request = urllib.request.Request(base_url.rstrip("/"), data=path.read_bytes(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as error:
        detail = _outcome_text(error.read())
        raise DeliveryError(f"FHIR server answered {error.code}: {detail}", permanent=400 <= error.code < 500) from error
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise DeliveryError(f"FHIR server unreachable: {getattr(error, 'reason', error)}") from error
