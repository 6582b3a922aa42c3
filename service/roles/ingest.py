"""The `ingest` role: DICOM listener, study worker, outbox, spool retention and HTTP, over one var
directory, scoring through a scorer at `scorer_address` (serve's child, or scorer pods)."""

from __future__ import annotations

import functools
import logging
import threading

from service.config import Config
from service.durable import remove_partial_writes
from service.ingest.index import PROCESSING, RECEIVING, StudyIndex
from service.ingest.receive import ReceiveDirectory
from service.ingest.scp import ListenerServer, StorageHandlers, build_ae, start_listener
from service.ingest.spool import Spool
from service.observability import (INGEST_REGISTRY, QUEUE_DEPTH, QUEUE_OLDEST, SCORER_UP, HealthServer,
                                   initialise_ingest_metrics, watch_var_dir)
from service.outputs.destinations import configured_destinations
from service.outputs.outbox import Outbox
from service.outputs.page_process import close_page_renderer
from service.outputs.warm_up import wait_for_warm_up
from service.retention import SpoolRetention
from service.roles.certificates import load_tls
from service.scoring.client import GrpcScorer
from service.scoring.transport import channel_tls
from service.stop_signals import StopSignals
from service.worker import StudyWorker

log = logging.getLogger(__name__)


def open_to_anyone(config: Config) -> bool:
    """Plain DICOM, no calling-AE allowlist, on an address other machines can reach."""
    loopback = config.dicom_host in ("localhost", "::1") or config.dicom_host.startswith("127.")
    return not config.dicom_tls and not config.dicom_allowed_calling_aes and not loopback


class Ingest:
    """Listener + worker + outbox + spool retention + HTTP, wired to one var directory and one scorer."""

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
        watch_var_dir(config.var_dir)
        receiving.check_same_volume(spool.root)
        receiving.install()
        self.index = StudyIndex(config.index_path)
        for state in (RECEIVING, PROCESSING):  # read at each scrape: never stale
            QUEUE_DEPTH.labels(state).set_function(functools.partial(self.index.count_in, state))
            QUEUE_OLDEST.labels(state).set_function(functools.partial(self.index.oldest_age, state))
        self.scorer = GrpcScorer(config.scorer_address, tls=self.scorer_tls,
                                 max_message_bytes=config.grpc_max_message_bytes)
        self.outbox = Outbox(
            config.outbox_database, configured_destinations(config),
            max_attempts=config.delivery_max_attempts, initial_backoff_s=config.delivery_initial_backoff_seconds,
        )
        self.worker = StudyWorker(config, self.index, self.scorer, self.outbox)
        self.retention = SpoolRetention(config, self.index, spool, self.outbox)
        initialise_ingest_metrics(destination.name for destination in self.outbox.destinations)
        SCORER_UP.set_function(lambda: float(self.scorer.serving()))  # asked at each scrape
        self.ae = build_ae(config.dicom_ae_title, config.dicom_max_associations, config.dicom_allowed_calling_aes)
        self.handlers = StorageHandlers(spool, self.index, receiving, config.instance_limits, self.worker.arrivals)
        self.http = HealthServer(config.http_host, config.http_port, INGEST_REGISTRY, self.readiness,
                                 self.liveness)
        self.listener: ListenerServer | None = None
        self._scorer_reached = False  # set by readiness, once: see readiness()

    def liveness(self) -> tuple[bool, str]:
        """Dead worker or outbox threads make the process useless: say so, to be restarted."""
        if not self.worker.alive:
            return False, "study worker stopped"
        if not self.outbox.alive:
            return False, "outbox delivery stopped"
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        """Ready to receive: alive, the listener up, and the scorer reached once since the start.

        The scorer is required only until it first answers SERVING. A pod that cannot reach it
        from the start (a wrong address, a TLS certificate it refuses) is a bad deployment, and
        staying unready halts the rollout. Once reached, a later scorer outage leaves the pod
        ready: instances are still received into the durable spool and scored when the scorer
        is back. Turning unready then would take every ingest pod out of the DICOM Service at
        once and make the PACS's sends fail for as long as the scorer is down.
        (rcds_scorer_up and RadiomicsCdsScorerUnavailable report such an outage.)
        """
        alive, detail = self.liveness()
        if not alive:
            return False, detail
        if self.listener is None:
            return False, "DICOM listener not started"
        if not self._scorer_reached:
            if not self.scorer.serving():
                return False, "scoring core not reached since the start"
            self._scorer_reached = True
        return True, "ready"

    def start(self) -> None:
        self.http.start()
        self.outbox.start()
        self.worker.start()
        self.retention.start()
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
        self.retention.stop()
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
            wait_for_warm_up()
