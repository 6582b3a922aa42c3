"""The DICOMweb prior source gives a busy PACS a few quick tries, not dicomweb-client's 30 s of
back-off per request, and a PACS that never answers one wait of the timeout, not one per
attempt. The PACS here is a tiny local HTTP server answering 503, or a socket that takes the
request and never answers: faults Orthanc does not produce on demand (the tests against Orthanc
cover the working source)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from service.errors import PriorSourceError
from service.priors import dicomweb
from service.priors.dicomweb import DicomwebProvider
from service.priors.source import PatientQuery


class _Busy(BaseHTTPRequestHandler):
    requests_seen: list[float] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        _Busy.requests_seen.append(time.monotonic())
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def busy_pacs() -> Iterator[str]:
    _Busy.requests_seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    finally:
        server.shutdown()
        server.server_close()


def test_a_busy_pacs_is_asked_three_times_with_the_configured_back_off(busy_pacs):
    provider = DicomwebProvider(busy_pacs, timeout_s=5)
    query = PatientQuery(patient_id="RETRY-1", issuer_of_patient_id="", earliest_date="20200101",
                         latest_date="20240101")

    with pytest.raises(PriorSourceError, match="DICOMweb QIDO-RS failed: HTTP 503 after 3 attempts"):
        provider.find(query)

    seen = _Busy.requests_seen
    assert len(seen) == dicomweb.ATTEMPTS == 3
    gaps = [later - earlier for earlier, later in zip(seen, seen[1:])]
    assert all(gap >= wanted * 0.9 for gap, wanted in zip(gaps, (0.5, 1.0))), gaps


@pytest.fixture(params=[b"", b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\nContent-Length: 512\r\n\r\n["],
                ids=["nothing", "headers-then-nothing"])
def silent_pacs(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[bytes]]]:
    """Accepts connections and reads each request, then answers nothing, or only the answer's
    headers and its first byte (a hung PACS either way; requests raises Timeout for the first,
    a ConnectionError around urllib3's ReadTimeoutError for the second)."""
    listener = socket.create_server(("127.0.0.1", 0))
    requests_read: list[bytes] = []
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:  # closed at the end of the test
                return
            held.append(connection)
            requests_read.append(connection.recv(65536))
            connection.sendall(request.param)

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/dicom-web", requests_read
    finally:
        listener.close()
        for connection in held:
            connection.close()


def test_a_pacs_that_never_answers_is_asked_once(silent_pacs):
    url, requests_read = silent_pacs
    provider = DicomwebProvider(url, timeout_s=0.5)
    query = PatientQuery(patient_id="RETRY-2", issuer_of_patient_id="", earliest_date="20200101",
                         latest_date="20240101")

    with pytest.raises(PriorSourceError, match=r"^DICOMweb QIDO-RS failed: timed out$"):
        provider.find(query)

    assert len(requests_read) == 1
    assert requests_read[0].startswith(b"GET /dicom-web/series?")
