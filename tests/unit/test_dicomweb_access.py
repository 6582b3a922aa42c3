"""What a DICOMweb client built from the settings sends: the bearer token or the HTTP Basic
credentials, never both, and nothing when none is set. Orthanc (tests/integration/test_stow.py,
test_priors.py) checks Basic credentials for real; no server here checks bearer tokens, so this
records the requests a client makes on a local HTTP server that answers an empty QIDO-RS."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from service.outputs.dicomweb_access import DicomwebAccess
from tests.support.http_server import QuietHandler, serving


class _Recording(QuietHandler):
    authorizations: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        _Recording.authorizations.append(self.headers.get("Authorization"))
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"[]")


@pytest.fixture
def server_url() -> Iterator[str]:
    _Recording.authorizations = []
    with serving(_Recording) as base:
        yield f"{base}/dicom-web"


@pytest.mark.parametrize(("credentials", "header"), [
    ({}, None),
    ({"bearer_token": "eyJ.s3cret"}, "Bearer eyJ.s3cret"),
    ({"basic_auth": "rcds:s3cret:pass"}, "Basic " + base64.b64encode(b"rcds:s3cret:pass").decode()),
    ({"basic_auth": "rcds:s3cret:päss€"}, "Basic " + base64.b64encode("rcds:s3cret:päss€".encode()).decode()),  # RFC 7617: UTF-8
])
def test_the_client_sends_the_configured_credential(server_url: str, credentials: dict[str, str],
                                                    header: str | None) -> None:
    access = DicomwebAccess(server_url, **credentials)
    assert access.client(timeout_s=5).search_for_studies() == []
    assert _Recording.authorizations == [header]
    assert "s3cret" not in repr(access)


def test_a_client_is_never_given_both_credentials() -> None:
    with pytest.raises(ValueError, match="not both"):
        DicomwebAccess("https://pacs.example/dicom-web", bearer_token="t", basic_auth="rcds:s3cret")
