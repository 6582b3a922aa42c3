"""The `scorer` role: the gRPC scoring core with /metrics, /healthz and /readyz.

It imports the scoring engine and gRPC only: nothing of the DICOM listener, the worker or the
output builders, which a scorer pod (and serve's scorer child) never runs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from service.config import Config
from service.observability import SCORER_REGISTRY, HealthServer, initialise_scorer_metrics
from service.scoring.features import engine_versions
from service.scoring.lesion import ScoringContext
from service.scoring.panel import feature_panel
from service.scoring.parameter_file import load_parameter_file
from service.scoring.server import build_server
from service.scoring.settings import ExtractionSettings
from service.scoring.signatures import load_signature
from service.scoring.transport import server_credentials
from service.stop_signals import StopSignals

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
