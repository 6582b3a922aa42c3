"""Process roles: `scorer` (gRPC scoring core), `ingest` (listener, worker, outbox, HTTP) and
`serve` (both, the scorer as a child process, for one machine and the quick start)."""

from __future__ import annotations

import errno
import functools
import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from service.config import Config
from service.durable import remove_partial_writes
from service.errors import ConfigError
from service.ingest.index import PROCESSING, RECEIVING, StudyIndex
from service.ingest.receive import ReceiveDirectory
from service.ingest.scp import ListenerServer, StorageHandlers, build_ae, start_listener
from service.ingest.spool import Spool
from service.lifeline import start_child, wait_ready
from service.observability import (INGEST_REGISTRY, QUEUE_DEPTH, SCORER_REGISTRY, SCORER_UP, HealthServer,
                                   initialise_ingest_metrics, initialise_scorer_metrics)
from service.outputs.destinations import configured_destinations, pacs_tls
from service.outputs.outbox import Outbox
from service.outputs.page_process import close_page_renderer, start_page_renderer
from service.outputs.warm_up import start_warm_up
from service.scoring.client import GrpcScorer
from service.scoring.features import engine_versions
from service.scoring.lesion import ScoringContext
from service.scoring.server import build_server
from service.scoring.panel import feature_panel
from service.scoring.parameter_file import load_parameter_file
from service.scoring.settings import ExtractionSettings
from service.scoring.signatures import load_signature
from service.scoring.transport import channel_tls, server_credentials
from service.stop_signals import StopSignals
from service.tls import server_context
from service.worker import StudyWorker

log = logging.getLogger(__name__)


def scoring_context(config: Config) -> ScoringContext:
    """The scorer's configuration; the signature must accept the settings (checked here)."""
    signature = load_signature(config.signature_file)
    settings = (
        ExtractionSettings() if config.extraction_settings_file is None
        else load_parameter_file(config.extraction_settings_file)
    )
    signature.check_preprocessing(settings)
    return ScoringContext(settings, signature, config.location_rules, feature_panel(config.feature_panel, settings, signature))


def run_scorer(config: Config, stop: threading.Event | None = None,
               on_ready: Callable[[], None] | None = None) -> None:
    """Serve the scoring core until SIGTERM/SIGINT (or `stop`, set by serve's lifeline), with
    /metrics, /healthz and /readyz on http_port; `on_ready` runs once the server is started.

    On SIGTERM: health turns NOT_SERVING and /readyz 503 (so load balancers and probes stop
    sending), new calls are refused, and calls in flight get `scorer_grace_seconds` to finish; a
    call cut off by the end of the grace period fails on the client, whose study is then retried.
    """
    stop_signals = StopSignals(stop)
    server, port, health_servicer = build_server(
        scoring_context(config), config.scorer_address, volume_filter_ml=config.volume_filter_ml,
        max_message_bytes=config.grpc_max_message_bytes, workers=config.scorer_workers,
        credentials=server_credentials(config), reflection_enabled=config.scorer_reflection,
    )
    stopping = threading.Event()
    initialise_scorer_metrics(engine_versions())
    http = HealthServer(config.http_host, config.http_port, SCORER_REGISTRY,
                        ready=lambda: (False, "stopping") if stopping.is_set() else (True, "serving"),
                        healthy=lambda: (True, "ok"))
    server.start()
    http.start()
    try:
        log.info("scoring core listening on port %d (%s%s); HTTP on port %d", port, _scorer_tls_mode(config),
                 ", server reflection on" if config.scorer_reflection else "", http.port)
        if on_ready:
            on_ready()
        stop_signals.wait()
        stopping.set()
        health_servicer.enter_graceful_shutdown()
        log.info("stopping: no new calls, %g s for calls in flight", config.scorer_grace_seconds)
    finally:
        server.stop(grace=config.scorer_grace_seconds).wait()
        http.stop()


def _scorer_tls_mode(config: Config) -> str:
    """How the scorer role serves, for its start-up log line."""
    if config.scorer_tls_cert_file is None:
        return "plaintext gRPC, no TLS"
    return "TLS, client certificates required" if config.scorer_tls_client_ca_file else "TLS"


def listener_tls(config: Config) -> ssl.SSLContext | None:
    """The listener's TLS context when DICOM TLS is configured; ConfigError for unusable files."""
    cert_file, key_file = config.dicom_tls_cert_file, config.dicom_tls_key_file
    if not config.dicom_tls:
        return None
    assert cert_file is not None and key_file is not None  # Config requires the key with the certificate
    return server_context(cert_file, key_file, config.dicom_tls_ca_file)


def load_tls(config: Config) -> ssl.SSLContext | None:
    """Load every configured certificate and key, so that a bad file stops the start
    (ConfigError naming the setting); returns the listener's context."""
    tls = pacs_tls(config)
    if tls is not None:
        tls.context()
    return listener_tls(config)


def open_to_anyone(config: Config) -> bool:
    """Plain DICOM, no calling-AE allowlist, on an address other machines can reach."""
    loopback = config.dicom_host in ("localhost", "::1") or config.dicom_host.startswith("127.")
    return not config.dicom_tls and not config.dicom_allowed_calling_aes and not loopback


class Ingest:
    """Listener + worker + outbox + HTTP, wired to one var directory and one scorer."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.ssl_context = load_tls(config)  # before anything is opened: a bad file stops the start
        self.scorer_tls = channel_tls(config)
        spool = Spool(config.spool_dir)
        receiving = ReceiveDirectory(config.receive_dir)
        removed = (spool.remove_leftovers() + receiving.remove_leftovers()
                   + remove_partial_writes(config.outbox_dir))
        if removed:
            log.info("removed %d partial writes left by an interrupted stop", removed)
        config.outbox_dir.mkdir(parents=True, exist_ok=True)  # from the start: prior_directory may name it
        receiving.check_same_volume(spool.root)
        receiving.install()
        self.index = StudyIndex(config.index_path)
        for state in (RECEIVING, PROCESSING):  # read at each scrape: never stale
            QUEUE_DEPTH.labels(state).set_function(functools.partial(self.index.count_in, state))
        self.scorer = GrpcScorer(config.scorer_address, tls=self.scorer_tls,
                                 max_message_bytes=config.grpc_max_message_bytes)
        self.outbox = Outbox(
            config.outbox_database, configured_destinations(config),
            max_attempts=config.delivery_max_attempts, initial_backoff_s=config.delivery_initial_backoff_seconds,
        )
        self.worker = StudyWorker(config, self.index, self.scorer, self.outbox)
        initialise_ingest_metrics(destination.name for destination in self.outbox.destinations)
        SCORER_UP.set_function(lambda: float(self.scorer.serving()))  # what /readyz asks, at each scrape
        self.ae = build_ae(config.dicom_ae_title, config.dicom_max_associations, config.dicom_allowed_calling_aes)
        self.handlers = StorageHandlers(spool, self.index, receiving, config.instance_limits, self.worker.arrivals)
        self.http = HealthServer(config.http_host, config.http_port, INGEST_REGISTRY, self.readiness,
                                 self.liveness)
        self.listener: ListenerServer | None = None

    def liveness(self) -> tuple[bool, str]:
        """Dead worker or outbox threads make the process useless: say so, to be restarted."""
        if not self.worker.alive:
            return False, "study worker stopped"
        if not self.outbox.alive:
            return False, "outbox delivery stopped"
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        alive, detail = self.liveness()
        if not alive:
            return False, detail
        if self.listener is None:
            return False, "DICOM listener not started"
        if not self.scorer.serving():
            return False, "scoring core not serving"
        return True, "ready"

    def start(self) -> None:
        self.http.start()
        self.outbox.start()
        self.worker.start()
        self.listener = start_listener(self.ae, self.config.dicom_host, self.config.dicom_port, self.handlers,
                                       self.ssl_context)
        log.info("DICOM listener %s on port %d (%s; calling AE titles: %s; up to %d associations); "
                 "HTTP on port %d; results in %s", self.config.dicom_ae_title, self.listener.server_address[1],
                 self._tls_mode(), ", ".join(self.config.dicom_allowed_calling_aes) or "any",
                 self.config.dicom_max_associations, self.http.port, self.config.outbox_dir)
        if open_to_anyone(self.config):
            log.warning("the DICOM listener on %s accepts plain DICOM from any calling AE title: anyone who "
                        "reaches it can have results written to the PACS and the EHR for any patient. Set "
                        "dicom_allowed_calling_aes and DICOM TLS (README, Production checklist)",
                        self.config.dicom_host)

    def _tls_mode(self) -> str:
        if not self.config.dicom_tls:
            return "plain DICOM, no TLS"
        return "TLS, client certificates required" if self.config.dicom_tls_ca_file else "TLS"

    def stop(self) -> None:
        """Stop taking associations first, then let the worker finish the study in progress and the
        outbox record its last attempt; everything durable is already on disk."""
        if self.listener is not None:
            self.listener.shutdown()
        log.info("stopping: DICOM listener closed; finishing the study in progress and the outbox")
        # No time limit of our own: the orchestrator's grace period bounds it (a SIGKILL leaves the
        # study "processing", assessed again at the next start); closing the scorer channel under a
        # running call would fail the study for good.
        self.worker.stop(timeout_s=None)
        self.outbox.stop()
        self.scorer.close()
        self.http.stop()
        self.index.close()


def run_ingest(config: Config, stop: threading.Event | None = None) -> None:
    stop_signals = StopSignals(stop)
    ingest = Ingest(config)
    ingest.start()
    try:
        stop_signals.wait()
    finally:
        try:
            ingest.stop()
        finally:
            close_page_renderer()  # the process's, once its worker is done: it ends now, not at this process's exit


def check_serve_channel(config: Config) -> None:
    """`serve` runs both ends of the scorer channel from one configuration: they must agree, or
    the child's scorer and our client would never talk (found at start, not as a hung wait)."""
    if config.scorer_tls != (config.scorer_tls_cert_file is not None):
        raise ConfigError("serve runs the scorer and its client: set scorer_tls together with "
                          "scorer_tls_cert_file and scorer_tls_key_file (TLS on loopback), or neither")
    if config.scorer_tls_client_ca_file is not None and config.scorer_tls_client_cert_file is None:
        raise ConfigError("scorer_tls_client_ca_file makes the scorer require client certificates: set "
                          "scorer_tls_client_cert_file and scorer_tls_client_key_file for serve's own client")


def run_serve(config: Config, config_file: Path | None) -> int:
    """Scorer as a child process on loopback, ingest here; both stop together.

    The child is ours alone: serve refuses to start when `scorer_address` is taken (a scorer
    left running, say), the child binds it exclusively, ingest starts only once the child itself
    says it is ready (service.lifeline), and the child stops when serve is gone, even after a
    SIGKILL of serve. A dead child ends serve, so nothing else can answer in its place for long.

    Returns the exit code: 0 after SIGTERM/SIGINT, 1 when the scorer child died or never got ready.
    """
    load_tls(config)  # a bad certificate or key stops us before the scorer child starts
    check_serve_channel(config)
    server_credentials(config)  # the child's scorer TLS files too: a bad one stops serve, not only the child
    require_free_address(config.scorer_address, "scorer_address")
    check_scorer_metrics_port(config)
    command = [sys.executable, "-m", "service.cli", "scorer"]
    if config_file:
        command += ["--config", str(config_file)]
    # The child serves its own registry (scorer metrics, /healthz, /readyz) on scorer_metrics_port.
    scorer, lifeline = start_child(command, {**os.environ, "RCDS_HTTP_PORT": str(config.scorer_metrics_port)})
    scorer_died = threading.Event()
    stop = threading.Event()

    def watch_scorer() -> None:  # a dead scorer child ends serve, so a supervisor restarts both
        scorer.wait()
        if not stop.is_set():
            log.error("the scoring core exited (code %s); stopping", scorer.returncode)
            scorer_died.set()
            stop.set()

    threading.Thread(target=watch_scorer, name="scorer-watch", daemon=True).start()
    # Warm the output builders and the page renderer while the child starts (the worker's start
    # finds them started): the first study after the listener opens then pays none of it.
    start_warm_up()
    start_page_renderer()
    try:
        if not wait_ready(lifeline, timeout_s=60):
            return 1
        run_ingest(config, stop)
        return 1 if scorer_died.is_set() else 0
    finally:
        stop.set()
        scorer.terminate()
        try:
            scorer.wait(timeout=config.scorer_grace_seconds + 10)
        except subprocess.TimeoutExpired:
            scorer.kill()
        lifeline.close()


def check_scorer_metrics_port(config: Config) -> None:
    """serve's scorer child listens on scorer_metrics_port: not ingest's http_port, and not a port
    another process holds (else the child would die at start with a message naming http_port,
    the setting its own configuration calls it)."""
    if config.scorer_metrics_port == 0:
        return
    if config.scorer_metrics_port == config.http_port:
        raise ConfigError(f"scorer_metrics_port: {config.scorer_metrics_port} is also http_port; serve's scorer "
                          "child needs a port of its own (0: any free port)")
    require_free_address(f"{config.http_host}:{config.scorer_metrics_port}", "scorer_metrics_port")


def require_free_address(address: str, setting: str) -> None:
    """ConfigError naming `setting` when another process listens on `address` (host:port).

    Bound the way gRPC binds (SO_REUSEADDR, so connections of an earlier run in TIME_WAIT do not
    count), without SO_REUSEPORT, so a gRPC server holding the port makes the bind fail. Errors
    other than "in use" (an IPv6 address on a host without IPv6) are left to the real bind.
    """
    host, _, port = address.rpartition(":")
    try:
        addresses = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
    except (ValueError, OSError):
        raise ConfigError(f"{setting}: serve starts its scorer there, so it must be host:port, "
                          f"not {address!r}") from None
    for family, kind, protocol, _, socket_address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(socket_address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise ConfigError(f"{setting}: {address} is already in use by another process (a scorer "
                                      "left running?); stop it or set another " + setting) from None
