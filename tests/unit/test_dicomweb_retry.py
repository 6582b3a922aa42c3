"""The DICOMweb prior source gives a busy PACS a few quick tries, not dicomweb-client's 30 s of
back-off per request, and a PACS that never answers one wait of the timeout, not one per
attempt. The PACS here is a tiny local HTTP server answering 503, or a socket that takes the
request and never answers: faults Orthanc does not produce on demand (the tests against Orthanc
cover the working source)."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from service.errors import PriorSourceError
from service.outputs.dicomweb_access import DicomwebAccess
from service.priors import dicomweb
from service.priors.dicomweb import DicomwebProvider
from service.priors.retrieve import Landing, RetrievalLimits, SeriesRequest
from service.priors.source import PatientQuery
from tests.support import small_study
from tests.support.http_server import QuietHandler, serving


class _Busy(QuietHandler):
    requests_seen: list[float] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        _Busy.requests_seen.append(time.monotonic())
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def busy_pacs() -> Iterator[str]:
    _Busy.requests_seen = []
    with serving(_Busy) as base:
        yield f"{base}/dicom-web"


def test_a_busy_pacs_is_asked_three_times_with_the_configured_back_off(busy_pacs):
    provider = DicomwebProvider(DicomwebAccess(busy_pacs), timeout_s=5)
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
    provider = DicomwebProvider(DicomwebAccess(url), timeout_s=0.5)
    query = PatientQuery(patient_id="RETRY-2", issuer_of_patient_id="", earliest_date="20200101",
                         latest_date="20240101")

    with pytest.raises(PriorSourceError, match=r"^DICOMweb QIDO-RS failed: timed out$"):
        provider.find(query)

    assert len(requests_read) == 1
    assert requests_read[0].startswith(b"GET /dicom-web/series?")


def test_a_series_cut_off_after_an_instance_landed_is_not_asked_again(tmp_path):
    """WADO-RS of a series streams instance after instance into the landing; an answer cut off
    midway (here in its third part) is a failure of that retrieval, not retried: a second
    request would land the same instances again. (A socket that closes mid-answer: no real
    PACS does so on cue.)"""
    ct = small_study.ct_slices()[0]
    ct.Rows = ct.Columns = 800  # a part larger than dicomweb-client's 1 MB read, so it is parsed as it arrives
    ct.PixelData = bytes(800 * 800 * 2)
    encoded = io.BytesIO()
    ct.save_as(encoded, enforce_file_format=True)
    part = b"--rcds\r\nContent-Type: application/dicom\r\n\r\n" + encoded.getvalue() + b"\r\n"
    sent = part + part + part[:200]  # the third instance cut off
    head = ("HTTP/1.1 200 OK\r\nContent-Type: multipart/related; type=\"application/dicom\"; boundary=rcds\r\n"
            f"Content-Length: {3 * len(part) + 8}\r\n\r\n").encode()
    listener = socket.create_server(("127.0.0.1", 0))
    requests_read: list[bytes] = []

    def answer() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            requests_read.append(connection.recv(65536))
            connection.sendall(head + sent)
            connection.close()

    threading.Thread(target=answer, daemon=True).start()
    try:
        provider = DicomwebProvider(DicomwebAccess(f"http://127.0.0.1:{listener.getsockname()[1]}/dicom-web"), timeout_s=5)
        landing = Landing(tmp_path / "landing", RetrievalLimits())
        with pytest.raises(PriorSourceError, match="^DICOMweb WADO-RS failed: answer cut off$"):
            provider.retrieve(SeriesRequest(str(ct.StudyInstanceUID), str(ct.SeriesInstanceUID)), landing)
    finally:
        listener.close()
    assert len(requests_read) == 1 and len(landing.paths) >= 1
