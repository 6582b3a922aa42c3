"""Metrics, health endpoints and logging.

Metric labels carry only bounded, non-identifying values (SOP class names, outcome kinds,
destination kinds, versions): never a UID, a patient identifier or an error text.

Each role has its own registry (INGEST_REGISTRY for `ingest` and serve's ingest side,
SCORER_REGISTRY for `scorer` and serve's scorer child), so a role exports only the series it
can move: a scorer's scrape holds no ingest counter frozen at 0 and the other way round. Both
carry the process's own metrics (CPU, memory, open files: prometheus_client's process and
platform collectors) and rcds_build_info, the versions this process runs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import platform
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Literal

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info,
                               PlatformCollector, ProcessCollector, generate_latest)

from service import __version__
from service.errors import ConfigError


def _role_registry() -> tuple[CollectorRegistry, Info]:
    """A role's registry with the process metrics and the (not yet set) build information."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    build_info = Info("rcds_build", "Versions this process runs: radiomics-cds, Python and, in the scorer, the "
                      "feature engines by distribution (pyradiomics_bhklab, simpleitk, numpy)", registry=registry)
    return registry, build_info


INGEST_REGISTRY, _INGEST_BUILD_INFO = _role_registry()
SCORER_REGISTRY, _SCORER_BUILD_INFO = _role_registry()

# Every value each labelled counter can take. A labelled series exists only once its labels are
# used, and a rate() over a series that appears at its first increment is not an increase: the
# first failure ever would not fire an alert (deploy/prometheus/alerts.yaml). So each role exports
# its counters at 0 for all these values from its start (initialise_ingest_metrics,
# initialise_scorer_metrics); new values are added here, next to the code that uses them.
INSTANCE_KINDS = ("ct", "rtstruct", "seg", "reg")
INSTANCE_REJECTION_REASONS = ("unreadable", "truncated", "missing_attributes", "inconsistent", "over_limit",
                              "transfer_syntax", "registration", "storage_error")
ASSOCIATION_REJECTION_REASONS = ("calling_ae", "called_ae", "local_limit", "tls", "other")
STUDY_FAILURE_KINDS = ("input", "internal")
LESION_OUTCOMES = ("scored", "not_computable", "refused", "error")
# What a scored study's lookup of its priors came to (service.worker): found, at least one prior
# report of ours to compare with; none, a source answered with none to use; unavailable, no source
# answered (the study's outputs say "priors unavailable"); not_looked_up, the study has no
# PatientID or no valid study date to ask with; error, the lookup raised (the study fails).
PRIOR_LOOKUP_OUTCOMES = ("found", "none", "unavailable", "not_looked_up", "error")
# The stages of a study's way from its last instance to its outputs, in order (README's metrics
# table says what each covers): where the latency goes, per stage, without profiling a pod.
STUDY_STAGES = ("waiting", "restoring", "reading", "inputs", "scoring", "follow_up", "sr", "page", "encapsulated_pdf", "fhir",
                "writing", "completing")

INSTANCES_RECEIVED = Counter(
    "rcds_instances_received", "DICOM instances stored and acknowledged, by kind (ct, rtstruct, seg, reg: Spatial Registration)",
    ["kind"], registry=INGEST_REGISTRY,
)
INSTANCES_REJECTED = Counter(
    "rcds_instances_rejected", "C-STORE requests refused, by reason (unreadable, truncated, missing_attributes, inconsistent: "
    "header claims more than the file holds, over_limit: beyond the max_* settings, transfer_syntax, registration: "
    "a Spatial Registration we cannot read, storage_error)",
    ["reason"], registry=INGEST_REGISTRY,
)
ASSOCIATIONS_REJECTED = Counter(
    "rcds_associations_rejected",
    "Association requests refused, by reason (calling_ae, called_ae, local_limit, tls, other)", ["reason"],
    registry=INGEST_REGISTRY,
)
STUDIES_COMPLETED = Counter("rcds_studies_completed", "Studies scored and their outputs written", registry=INGEST_REGISTRY)
STUDIES_FAILED = Counter(
    "rcds_studies_failed", "Studies that failed, by kind (input, internal)", ["kind"], registry=INGEST_REGISTRY,
)
SCORING_SECONDS = Histogram(
    "rcds_scoring_seconds", "Wall time to score one study (loading, scoring, writing outputs)",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600), registry=INGEST_REGISTRY,
)
STUDY_STAGE_SECONDS = Histogram(
    "rcds_study_stage_seconds", "Wall time of each stage of a study, from its last instance to its outputs queued, "
    "by stage (" + ", ".join(STUDY_STAGES) + ")", ["stage"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300), registry=INGEST_REGISTRY,
)
OUTPUTS_DELIVERED = Counter(
    "rcds_outputs_delivered", "Outputs delivered, by destination (pacs, pacs-summary, pacs-stow, pacs-stow-summary, fhir)", ["destination"],
    registry=INGEST_REGISTRY,
)
OUTPUTS_FAILED = Counter(
    "rcds_outputs_failed", "Delivery attempts that failed, by destination (pacs, pacs-summary, pacs-stow, pacs-stow-summary, fhir)", ["destination"],
    registry=INGEST_REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "rcds_queue_depth", "Studies waiting or being processed, by state (receiving, processing)", ["state"],
    registry=INGEST_REGISTRY,
)
QUEUE_OLDEST = Gauge(
    "rcds_queue_oldest_seconds", "Seconds the oldest study in each state (receiving, processing) has been in it, "
    "0 with none: receiving since its first instance of this round of waiting, processing since its claim "
    "(service.ingest.index.StudyState.since says why)", ["state"], registry=INGEST_REGISTRY,
)
OUTBOX_PENDING = Gauge("rcds_outbox_pending", "Deliveries still being attempted (not the given-up ones)",
                       registry=INGEST_REGISTRY)
OUTBOX_FAILED = Gauge(
    "rcds_outbox_failed", "Deliveries given up (refused for good, or out of attempts), by destination: their results "
    "stay in the outbox until `radiomics-cds redeliver`", ["destination"], registry=INGEST_REGISTRY,
)
DELIVERIES_GIVEN_UP = Counter(
    "rcds_deliveries_given_up", "Deliveries given up (refused for good, or out of attempts), by destination",
    ["destination"], registry=INGEST_REGISTRY,
)
PRIOR_LOOKUPS = Counter(
    "rcds_prior_lookups", "Scored studies' lookups of their priors, by outcome (found, none, unavailable: no prior "
    "source answered, not_looked_up: no PatientID or study date, error: the lookup raised)", ["outcome"],
    registry=INGEST_REGISTRY,
)
PRIOR_LOOKUP_SECONDS = Histogram(
    "rcds_prior_lookup_seconds", "Wall time of a scored study's prior lookup that asked the sources (finding and "
    "fetching its prior SRs, or every source failing)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120), registry=INGEST_REGISTRY,
)
VAR_DIR_FREE = Gauge(
    "rcds_var_dir_free_bytes", "Bytes the service may still write on the volume holding var_dir (spool, index, "
    "outbox; what statvfs gives an unprivileged process, read at each scrape, NaN when it cannot be read): "
    "instances are refused when it runs out", registry=INGEST_REGISTRY,
)
VAR_DIR_SIZE = Gauge(
    "rcds_var_dir_size_bytes", "Size in bytes of the volume holding var_dir (read at each scrape, NaN when it "
    "cannot be read)", registry=INGEST_REGISTRY,
)
SPOOL_STUDIES_REMOVED = Counter(
    "rcds_spool_studies_removed", "Studies whose spooled instances spool retention removed (spool_retention_days)",
    registry=INGEST_REGISTRY,
)
SPOOL_REMOVED_BYTES = Counter(
    "rcds_spool_removed_bytes", "Bytes of spooled instances spool retention removed (spool_retention_days)",
    registry=INGEST_REGISTRY,
)
SCORER_UP = Gauge(
    "rcds_scorer_up", "1 when the scorer answers SERVING to this ingest's health check (asked at each scrape), "
    "else 0: studies wait, instances are still received", registry=INGEST_REGISTRY,
)
LESIONS_SCORED = Counter(
    "rcds_scorer_lesions", "Lesions this scorer process handled, by outcome (scored, not_computable, refused, error)",
    ["outcome"], registry=SCORER_REGISTRY,
)
LESIONS_IN_PROGRESS = Gauge(
    "rcds_scorer_lesions_in_progress", "Lesions this scorer process is scoring now (ScoreLesion and ScoreLesions calls)",
    registry=SCORER_REGISTRY,
)
LESION_SECONDS = Histogram(
    "rcds_scorer_lesion_seconds", "Wall time of scoring one lesion in this scorer process (a ScoreLesion call, or one lesion of a ScoreLesions call)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60), registry=SCORER_REGISTRY,
)


def build_labels(engines: Mapping[str, str]) -> dict[str, str]:
    """rcds_build_info's labels: our version, Python's and the given engines', each engine named
    by its distribution (pyradiomics-bhklab, not pyradiomics: they differ) as a Prometheus label
    name: lower case, `_` for anything else than a letter, digit or `_`."""
    return {"version": __version__, "python": platform.python_version(),
            **{re.sub(r"[^a-z0-9_]", "_", name.lower()): version for name, version in engines.items()}}


def initialise_ingest_metrics(destinations: Iterable[str]) -> None:
    """The ingest's labelled counters at 0 for every value they can take (see the label tuples
    above); `destinations` are the configured destinations' names. The ingest runs no feature
    engine: its build information names none."""
    _INGEST_BUILD_INFO.info(build_labels({}))
    for kind in INSTANCE_KINDS:
        INSTANCES_RECEIVED.labels(kind)
    for reason in INSTANCE_REJECTION_REASONS:
        INSTANCES_REJECTED.labels(reason)
    for reason in ASSOCIATION_REJECTION_REASONS:
        ASSOCIATIONS_REJECTED.labels(reason)
    for kind in STUDY_FAILURE_KINDS:
        STUDIES_FAILED.labels(kind)
    for stage in STUDY_STAGES:
        STUDY_STAGE_SECONDS.labels(stage)
    for outcome in PRIOR_LOOKUP_OUTCOMES:
        PRIOR_LOOKUPS.labels(outcome)
    for name in destinations:
        OUTPUTS_DELIVERED.labels(name)
        OUTPUTS_FAILED.labels(name)
        DELIVERIES_GIVEN_UP.labels(name)
        OUTBOX_FAILED.labels(name)


def initialise_scorer_metrics(engines: Mapping[str, str]) -> None:
    """The scorer's labelled counter at 0 for every outcome; `engines` (name: version) are the
    feature engines it scores with, for its build information."""
    _SCORER_BUILD_INFO.info(build_labels(engines))
    for outcome in LESION_OUTCOMES:
        LESIONS_SCORED.labels(outcome)


def watch_var_dir(var_dir: Path) -> None:
    """rcds_var_dir_free_bytes and rcds_var_dir_size_bytes read from `var_dir`'s volume at each
    scrape, as the queue gauges are read from the index: the volume fills with the studies
    received and empties as spool retention removes them, and only a value read now says how
    close to full it is."""
    VAR_DIR_FREE.set_function(functools.partial(_volume_bytes, var_dir, "f_bavail"))
    VAR_DIR_SIZE.set_function(functools.partial(_volume_bytes, var_dir, "f_blocks"))


def _volume_bytes(path: Path, blocks: Literal["f_bavail", "f_blocks"]) -> float:
    """A statvfs block count of the volume holding `path`, in bytes (POSIX counts blocks in
    f_frsize units, not f_bsize). Free is f_bavail, not f_bfree: the blocks a file system keeps
    for root (5 % on ext4) are not ours, as the service runs unprivileged. NaN when the volume
    cannot be read (var_dir removed under a running process): these gauges unknown rather than
    every metric of the scrape lost to an error."""
    try:
        stat = os.statvfs(path)
    except OSError:
        return math.nan
    return float(getattr(stat, blocks) * stat.f_frsize)


class RepeatedErrorLog:
    """One call site's error, logged at most once per `interval_s`.

    A full disk or a locked database fails the same way every cycle (twice a second for the
    worker): one line per interval, saying how many were held back, keeps the log readable and
    its volume bounded. The first occurrence after a quiet interval is logged at once.
    """

    def __init__(self, logger: logging.Logger, interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: float | None = None
        self._held_back = 0

    def log(self, message: str, *args: object, exc_info: bool = False) -> None:
        with self._lock:
            now = self._clock()
            if self._last is not None and now - self._last < self._interval_s:
                self._held_back += 1
                return
            held_back, self._held_back, self._last = self._held_back, 0, now
        if held_back:
            message += f" ({held_back} more like it in the last {self._interval_s:g} s not logged)"
        self._logger.error(message, *args, exc_info=exc_info)


# A DICOM UID: a root of 0, 1 or 2 and more numeric components. Taken for one when it has at
# least five components or 16 characters (2.25.<UUID> has three), so that version numbers and
# IPv4 addresses (at most four components, 15 characters) are left alone. A component may have
# leading zeros: a malformed UID (1.2.840.10008.05.1) identifies as much as a valid one.
# Not inside a longer dotted number (after a digit, or a digit and a dot), but after anything
# else, a lone dot included: a hidden file's name (".<UID>.dcm.<random>.tmp") holds a UID too.
_UID_LIKE = re.compile(r"(?<!\d)(?<!\d\.)[0-2](?:\.\d+){2,}(?!\.?\d)")


class UidRedactingFilter(logging.Filter):
    """Above DEBUG, UIDs in log lines become `uid:<8 hex digits>` (a hash: lines about the same
    object still match each other).

    A Study Instance UID can identify a patient (it is in the patient's record); libraries log
    sender-supplied UIDs verbatim, and our own failure reasons name instances and frames of
    reference. At DEBUG, for a developer at a test system, they are kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            message = record.getMessage()
            redacted = redact_uids(message)
            if redacted != message:
                record.msg, record.args = redacted, None
            _redact_traceback(record)
        return True


def _redact_traceback(record: logging.LogRecord) -> None:
    """The record's traceback (log.exception, exc_info) and stack (stack_info), redacted.

    An exception's text is the sender's data as often as ours (a KeyError names the UID it did
    not find). The traceback is formatted here, once, into exc_text, which every formatter
    prints instead of formatting exc_info again; exc_info is cleared so that none can.
    """
    if record.exc_info and not record.exc_text:
        record.exc_text = _TRACEBACK_FORMATTER.formatException(record.exc_info)
    record.exc_info = None
    if record.exc_text:
        record.exc_text = redact_uids(record.exc_text)
    if record.stack_info:
        record.stack_info = redact_uids(record.stack_info)


_TRACEBACK_FORMATTER = logging.Formatter()


def redact_uids(text: str) -> str:
    """`text` with each UID replaced by its token (uid_token): for logs above DEBUG and for
    messages shown to a user (the command line's error line, a study's stored error)."""
    return _UID_LIKE.sub(_token_of_match, text)


def uid_token(uid: str) -> str:
    """`uid:<8 hex digits>`: a short, stable, non-identifying name of a UID (the first eight
    digits of its study key, service.ingest.spool.study_key, for a Study Instance UID)."""
    return "uid:" + hashlib.sha256(uid.encode()).hexdigest()[:8]


def _token_of_match(match: re.Match[str]) -> str:
    text = match.group(0)
    if text.count(".") < 4 and len(text) < 16:
        return text
    return uid_token(text)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line (time, level, logger, message, and the exception's traceback or
    the stack when there is one), for log collectors that index fields instead of parsing text."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:  # redacted by UidRedactingFilter above DEBUG
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False)


# What configure_logging was last given: (level, format). A process this one spawns (the page
# renderer) configures its own logging with it.
_CONFIGURED: dict[str, str] = {"level": "INFO", "format": "text"}


def logging_configuration() -> tuple[str, str]:
    """(level, format) as configure_logging was last called in this process."""
    return _CONFIGURED["level"], _CONFIGURED["format"]


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Log lines as text or JSON (log_format), UIDs redacted; library warnings logged without
    their text; uncaught exceptions logged. A spawned process starts with none of this: it
    calls this too, with logging_configuration() of its parent.

    Libraries quote attribute values in warnings (highdicom, for one, quotes the patient's
    name when it finds it oddly formed), so their text never reaches the log: only the
    warning's kind and where it was raised. An exception nothing caught (a bug, in the main
    thread or another) would be printed by Python's own hooks, past the handlers and their
    redaction: it is logged instead.
    """
    _CONFIGURED.update(level=level, format=log_format)
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(UidRedactingFilter())
        if log_format == "json":
            handler.setFormatter(JsonLogFormatter())
    # pynetdicom logs each association's and message's details (UIDs a sender supplied among
    # them) and highdicom each object it builds, at INFO: their warnings and errors only.
    for noisy in ("pynetdicom", "highdicom"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # pydicom logs invalid values *with* the value (e.g. a malformed birth date): errors only.
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    # dicomweb-client and urllib3 log each request's URL at DEBUG, and a QIDO-RS URL holds the
    # PatientID in its query: an identifier in clear even where UIDs are allowed (DEBUG).
    for requests_logger in ("dicomweb_client", "urllib3"):
        logging.getLogger(requests_logger).setLevel(logging.INFO)
    warnings.showwarning = _log_warning_without_text
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, trace)
        return
    logging.getLogger("radiomics-cds").critical("uncaught %s", kind.__name__, exc_info=(kind, error, trace))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if issubclass(args.exc_type, SystemExit):  # as threading's own hook: a thread's normal way out
        return
    logging.getLogger("radiomics-cds").critical(
        "uncaught %s in thread %s", args.exc_type.__name__, args.thread.name if args.thread else "?",
        exc_info=args.exc_value)


def _log_warning_without_text(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    logging.getLogger("warnings").warning(
        "%s raised at %s:%d (text withheld: it may quote patient data)", category.__name__, filename, lineno
    )


SHUTDOWN_POLL_SECONDS = 0.1
"""How often a server's accept loop (socketserver's serve_forever) looks for a shutdown request.
Its default, 0.5 s, is how long each stop waited for it: the DICOM listener's and the HTTP
server's, one after the other, in every stop of an ingest process."""


class HealthServer:
    """/metrics (Prometheus: the role's `registry`), /healthz (alive: restart me if not), /readyz
    (ready for studies)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, ready: Callable[[], tuple[bool, str]],
                 healthy: Callable[[], tuple[bool, str]]) -> None:
        handler = _handler_for(registry, ready, healthy)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as error:  # most often another role on the same host kept the default 8080
            raise ConfigError(f"http_port: cannot listen on {host}:{port} ({error.strerror or error}); "
                              "set another http_port (0: any free port)") from None
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(SHUTDOWN_POLL_SECONDS,), name="http",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_for(registry: CollectorRegistry, ready: Callable[[], tuple[bool, str]],
                 healthy: Callable[[], tuple[bool, str]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
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
