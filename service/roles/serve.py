"""The `serve` role: the scorer as a child process on loopback and ingest here, for one machine
and the quick start; both stop together.

Imports only what starting the child needs; the ingest side is imported once the child is
started (run_serve).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from service.config import Config
from service.errors import ConfigError
from service.lifeline import start_child, wait_ready
from service.roles.certificates import load_tls
from service.scoring.transport import server_credentials

log = logging.getLogger(__name__)


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
    # The child serves its own registry (scorer metrics, /healthz, /readyz) on scorer_metrics_port,
    # and logs at serve's level (its --log-level included: the child has no flags but --config).
    scorer, lifeline = start_child(command, {**os.environ, "RCDS_HTTP_PORT": str(config.scorer_metrics_port),
                                             "RCDS_LOG_LEVEL": config.log_level})
    scorer_died = threading.Event()
    stop = threading.Event()

    def watch_scorer() -> None:  # a dead scorer child ends serve, so a supervisor restarts both
        scorer.wait()
        if not stop.is_set():
            log.error("the scoring core exited (code %s); stopping", scorer.returncode)
            scorer_died.set()
            stop.set()

    try:
        threading.Thread(target=watch_scorer, name="scorer-watch", daemon=True).start()
        run_ingest = _start_ingest_side()
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


def _start_ingest_side() -> Callable[[Config, threading.Event], None]:
    """Import the ingest side and start its warm-ups while the scorer child starts; returns
    run_ingest.

    Imported only once the child is started: the child's imports (the scoring engine, about 1 s)
    and ours (listener, worker, output builders, about 2 s) then overlap, where one after the
    other they made serve take 4.8-5.7 s to open its listener (2.4-2.6 s now; README). The warm-ups (the output builders', and
    the page renderer's process with its sample page) start after the imports: started first,
    the renderer's process took a core from both imports and the listener opened 0.5 s later.
    The worker's start finds them started; the renderer may still be on its sample page when the
    listener opens, and the first study's page then waits for it.
    """
    from service.outputs.page_process import start_page_renderer
    from service.outputs.warm_up import start_warm_up
    from service.roles.ingest import run_ingest

    start_warm_up(start_page_renderer())
    return run_ingest


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
