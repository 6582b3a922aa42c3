"""The roles over TLS on the scorer channel, as processes configured by RCDS_* variables like any
deployment: `scorer` requiring client certificates with `ingest` presenting one (its /readyz is
200 only when its own gRPC health check gets through), and `serve` running both ends on
loopback over TLS. The PKI is made by the test (tests/support/certs.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.config import load_config
from service.scoring.client import GrpcScorer
from service.scoring.transport import channel_tls
from tests.support.service import Scorer
from tests.support.certs import KeyPair, make_authority
from tests.support.processes import LOOPBACK, wait_until
from tests.support.service import RunningService

pytestmark = [pytest.mark.external, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, KeyPair | Path]:
    directory = tmp_path_factory.mktemp("pki")
    ca = make_authority(directory, "Hospital")
    return {"ca": ca.cert, "scorer": ca.issue(directory, "scorer", server=True), "ingest": ca.issue(directory, "ingest")}


def _client_settings(pki: dict, identity: bool = True) -> dict[str, object]:
    settings: dict[str, object] = {"scorer_tls": "true", "scorer_tls_ca_file": pki["ca"]}
    if identity:
        settings |= {"scorer_tls_client_cert_file": pki["ingest"].cert, "scorer_tls_client_key_file": pki["ingest"].key}
    return settings


def _server_settings(pki: dict) -> dict[str, object]:
    return {"scorer_tls_cert_file": pki["scorer"].cert, "scorer_tls_key_file": pki["scorer"].key,
            "scorer_tls_client_ca_file": pki["ca"]}


@pytest.fixture(scope="module")
def mtls_scorer(tmp_path_factory, pki) -> Iterator[Scorer]:
    scorer = Scorer(tmp_path_factory.mktemp("scorer"), **_server_settings(pki))
    yield scorer
    scorer.stop()


def test_ingest_reaches_a_scorer_requiring_its_client_certificate(tmp_path, mtls_scorer, pki):
    assert "(TLS, client certificates required);" in mtls_scorer.log_path.read_text()
    target = f"{LOOPBACK}:{mtls_scorer.grpc_port}"
    service = RunningService(tmp_path / "var", "ingest", scorer_address=target, **_client_settings(pki))
    try:
        wait_until(lambda: service.readyz()[0] == 200, 60, "ingest to be ready over mutual TLS")
    finally:
        service.stop()
    environ = {f"RCDS_{name.upper()}": str(value) for name, value in _client_settings(pki).items()}
    with GrpcScorer(target, tls=channel_tls(load_config(environ=environ)), timeout_s=30) as client:
        assert client.describe().algorithm_name


def test_ingest_without_a_client_certificate_is_not_ready(tmp_path, mtls_scorer, pki):
    service = RunningService(tmp_path / "var", "ingest", scorer_address=f"{LOOPBACK}:{mtls_scorer.grpc_port}",
                             **_client_settings(pki, identity=False))
    try:
        assert service.readyz() == (503, "scoring core not reached since the start\n")
    finally:
        service.stop()


def test_serve_runs_its_scorer_over_mutual_tls_on_loopback(tmp_path, pki):
    """serve starts its listener only once its own client reached the child scorer."""
    service = RunningService(tmp_path / "var", "serve", **_server_settings(pki), **_client_settings(pki))
    try:
        assert "(TLS, client certificates required);" in service.read_log()  # the child scorer's log
        wait_until(lambda: service.readyz()[0] == 200, 60, "serve to be ready")
    finally:
        service.stop()
