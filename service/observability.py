"""Metrics, health endpoints and logging.

Metric labels carry only bounded, non-identifying values (SOP class names, outcome kinds,
destination kinds): never a UID, a patient identifier or an error text.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from service.errors import ConfigError

REGISTRY = CollectorRegistry()

INSTANCES_RECEIVED = Counter(
    "rcds_instances_received", "DICOM instances stored and acknowledged, by kind (ct, rtstruct, seg)",
    ["kind"], registry=REGISTRY,
)
INSTANCES_REJECTED = Counter(
    "rcds_instances_rejected", "C-STORE requests refused, by reason (unreadable, truncated, missing_attributes, inconsistent: "
    "header claims more than the file holds, over_limit: beyond the max_* settings, storage_error)",
    ["reason"], registry=REGISTRY,
)
ASSOCIATIONS_REJECTED = Counter(
    "rcds_associations_rejected",
    "Association requests refused, by reason (calling_ae, local_limit, tls, other)", ["reason"], registry=REGISTRY,
)
STUDIES_COMPLETED = Counter("rcds_studies_completed", "Studies scored and their outputs written", registry=REGISTRY)
STUDIES_FAILED = Counter(
    "rcds_studies_failed", "Studies that failed, by kind (input, internal)", ["kind"], registry=REGISTRY,
)
SCORING_SECONDS = Histogram(
    "rcds_scoring_seconds", "Wall time to score one study (loading, scoring, writing outputs)",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600), registry=REGISTRY,
)
OUTPUTS_DELIVERED = Counter(
    "rcds_outputs_delivered", "Outputs delivered, by destination (pacs, fhir)", ["destination"], registry=REGISTRY,
)
OUTPUTS_FAILED = Counter(
    "rcds_outputs_failed", "Delivery attempts that failed, by destination (pacs, fhir)", ["destination"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "rcds_queue_depth", "Studies waiting or being processed, by state (receiving, processing)", ["state"],
    registry=REGISTRY,
)
OUTBOX_PENDING = Gauge("rcds_outbox_pending", "Deliveries not yet made", registry=REGISTRY)
LESIONS_SCORED = Counter(
    "rcds_scorer_lesions", "Lesions this scorer process handled, by outcome (scored, not_computable, refused, error)",
    ["outcome"], registry=REGISTRY,
)
LESIONS_IN_PROGRESS = Gauge(
    "rcds_scorer_lesions_in_progress", "ScoreLesion calls this scorer process is working on", registry=REGISTRY,
)
LESION_SECONDS = Histogram(
    "rcds_scorer_lesion_seconds", "Wall time of one ScoreLesion call in this scorer process",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60), registry=REGISTRY,
)


def configure_logging(level: str = "INFO") -> None:
    """Plain log lines; library warnings logged without their text.

    Libraries quote attribute values in warnings (highdicom, for one, quotes the patient's
    name when it finds it oddly formed), so their text never reaches the log: only the
    warning's kind and where it was raised.
    """
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("pynetdicom", "highdicom"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # pydicom logs invalid values *with* the value (e.g. a malformed birth date): errors only.
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    warnings.showwarning = _log_warning_without_text


def _log_warning_without_text(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    logging.getLogger("warnings").warning(
        "%s raised at %s:%d (text withheld: it may quote patient data)", category.__name__, filename, lineno
    )


class HealthServer:
    """/metrics (Prometheus), /healthz (alive: restart me if not), /readyz (ready for studies)."""

    def __init__(self, host: str, port: int, ready: Callable[[], tuple[bool, str]],
                 healthy: Callable[[], tuple[bool, str]]) -> None:
        handler = _handler_for(ready, healthy)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as error:  # most often another role on the same host kept the default 8080
            raise ConfigError(f"http_port: cannot listen on {host}:{port} ({error.strerror or error}); "
                              "set another http_port (0: any free port)") from None
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_for(ready: Callable[[], tuple[bool, str]],
                 healthy: Callable[[], tuple[bool, str]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path == "/metrics":
                self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif self.path in ("/healthz", "/readyz"):
                ok, detail = (healthy if self.path == "/healthz" else ready)()
                self._send(200 if ok else 503, f"{detail}\n".encode())
            else:
                self._send(404, b"not found\n")

        def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's name)
            """Probes every few seconds would flood the log."""

    return Handler
