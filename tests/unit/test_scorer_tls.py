"""TLS and mutual TLS on the gRPC channel between ingest and the scorer, and server reflection
only when asked, with real gRPC servers on loopback and a PKI made by the test
(tests/support/certs.py): a hospital CA issuing the scorer's and ingest's certificates, and a
rogue CA whose certificates nobody trusts.

Servers and clients are built from settings (Config) through the same functions the roles use
(service.scoring.transport), so what is tested is the wiring from the settings to gRPC. A
refused connection is seen as UNAVAILABLE on a health check (no retries there, unlike the
Scoring calls, whose retry policy would only make the test slower).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from service.roles.serve import check_serve_channel
from service.config import Config, load_config
from service.errors import ConfigError
from service.imaging.crops import lesion_crop
from service.scoring.client import GrpcScorer
from service.scoring.lesion import ScoringContext
from service.location import LocationRules
from service.scoring.panel import signature_panel
from service.scoring.server import SERVICE_NAME, build_server
from service.scoring.settings import ExtractionSettings
from service.scoring.signatures import load_signature
from service.scoring.transport import ChannelTls, channel_tls, open_channel, server_credentials
from tests.support.certs import Authority, KeyPair, make_authority
from tests.support.synthetic_lesion import synthetic_lesion_ct

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Pki:
    ca: Authority
    scorer: KeyPair  # server certificate for localhost / 127.0.0.1
    ingest: KeyPair  # client certificate
    misnamed: KeyPair  # server certificate for scorer.invalid only
    rogue_ca: Authority
    rogue_scorer: KeyPair
    rogue_ingest: KeyPair


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca, rogue = make_authority(directory, "Hospital"), make_authority(directory / "rogue", "Rogue")
    return Pki(ca=ca, scorer=ca.issue(directory, "scorer", server=True), ingest=ca.issue(directory, "ingest"),
               misnamed=ca.issue(directory, "misnamed", server=True, names=("scorer.invalid",)),
               rogue_ca=rogue, rogue_scorer=rogue.issue(directory / "rogue", "rogue scorer", server=True),
               rogue_ingest=rogue.issue(directory / "rogue", "rogue ingest"))


@pytest.fixture(scope="module")
def context() -> ScoringContext:
    signature = load_signature()
    return ScoringContext(ExtractionSettings(), signature, LocationRules(), signature_panel(signature))


Start = Callable[..., str]


@pytest.fixture
def start_scorer(context: ScoringContext) -> Iterator[Start]:
    """Starts a scorer on loopback from scorer-role settings; returns its target."""
    servers: list[grpc.Server] = []

    def start(**settings: object) -> str:
        config = Config(**settings)
        server, port, _ = build_server(context, f"{LOOPBACK}:0", workers=2, credentials=server_credentials(config),
                                       reflection_enabled=config.scorer_reflection)
        server.start()
        servers.append(server)
        return f"{LOOPBACK}:{port}"

    yield start
    for server in servers:
        server.stop(grace=None)


def _mtls_scorer(pki: Pki) -> dict[str, object]:
    return {"scorer_tls_cert_file": pki.scorer.cert, "scorer_tls_key_file": pki.scorer.key,
            "scorer_tls_client_ca_file": pki.ca.cert}


def _client(ca: Authority | None, identity: KeyPair | None = None, server_name: str | None = None) -> ChannelTls | None:
    """Ingest-side TLS from settings; `ca` None: plaintext."""
    if ca is None:
        return None
    return channel_tls(Config(scorer_tls=True, scorer_tls_ca_file=ca.cert, scorer_tls_server_name=server_name,
                              scorer_tls_client_cert_file=identity.cert if identity else None,
                              scorer_tls_client_key_file=identity.key if identity else None))


def _health(target: str, tls: ChannelTls | None) -> grpc.StatusCode:
    with open_channel(target, tls) as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


# --- the channel ----------------------------------------------------------------------------


def test_a_lesion_is_scored_over_mutual_tls(start_scorer, pki, context):
    target = start_scorer(**_mtls_scorer(pki))
    ct, mask = synthetic_lesion_ct((0.4, -1.1, 0.3))
    with GrpcScorer(target, tls=_client(pki.ca, pki.ingest)) as client:
        (lesion,) = client.score_batch([lesion_crop(ct, mask, context.settings)])
        assert client.describe().signature_id == context.signature.id
    assert lesion.score is not None and lesion.volume_ml > 0


def test_tls_without_client_certificates_serves_any_client_that_trusts_the_scorer(start_scorer, pki):
    target = start_scorer(scorer_tls_cert_file=pki.scorer.cert, scorer_tls_key_file=pki.scorer.key)
    assert _health(target, _client(pki.ca)) == grpc.StatusCode.OK


def test_a_plaintext_client_is_refused_by_a_tls_scorer(start_scorer, pki):
    target = start_scorer(scorer_tls_cert_file=pki.scorer.cert, scorer_tls_key_file=pki.scorer.key)
    assert _health(target, None) == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("identity", [None, "rogue_ingest"], ids=["no certificate", "certificate from another CA"])
def test_mutual_tls_refuses_clients_without_a_certificate_from_the_client_ca(start_scorer, pki, identity):
    target = start_scorer(**_mtls_scorer(pki))
    client = _client(pki.ca, getattr(pki, identity) if identity else None)
    assert _health(target, client) == grpc.StatusCode.UNAVAILABLE
    assert _health(target, _client(pki.ca, pki.ingest)) == grpc.StatusCode.OK  # the same scorer serves ingest


def test_a_client_refuses_a_scorer_its_ca_did_not_issue(start_scorer, pki):
    target = start_scorer(scorer_tls_cert_file=pki.rogue_scorer.cert, scorer_tls_key_file=pki.rogue_scorer.key)
    assert _health(target, _client(pki.ca)) == grpc.StatusCode.UNAVAILABLE


def test_the_scorer_certificate_must_name_the_target_or_the_server_name(start_scorer, pki):
    """In Kubernetes the certificate names the Service; scorer_tls_server_name covers targets
    (IP lists, other names) that the certificate does not carry."""
    target = start_scorer(scorer_tls_cert_file=pki.misnamed.cert, scorer_tls_key_file=pki.misnamed.key)
    assert _health(target, _client(pki.ca)) == grpc.StatusCode.UNAVAILABLE
    assert _health(target, _client(pki.ca, server_name="scorer.invalid")) == grpc.StatusCode.OK


def test_readiness_checks_the_scorer_with_the_ingest_credentials(start_scorer, pki):
    target = start_scorer(**_mtls_scorer(pki))
    with GrpcScorer(target, tls=_client(pki.ca, pki.ingest)) as ingest, GrpcScorer(target) as plaintext:
        assert ingest.serving()
        assert not plaintext.serving()


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(("environ", "named"), [
    ({"RCDS_SCORER_TLS_CERT_FILE": "/s.crt"}, "scorer_tls_cert_file and scorer_tls_key_file go together"),
    ({"RCDS_SCORER_TLS_CLIENT_CA_FILE": "/ca.crt"}, "scorer_tls_client_ca_file .* needs scorer TLS"),
    ({"RCDS_SCORER_TLS": "true", "RCDS_SCORER_TLS_CLIENT_KEY_FILE": "/i.key"},
     "scorer_tls_client_cert_file and scorer_tls_client_key_file go together"),
    ({"RCDS_SCORER_TLS_CA_FILE": "/ca.crt", "RCDS_SCORER_TLS_SERVER_NAME": "scorer"},
     "scorer_tls_ca_file, scorer_tls_server_name set but scorer_tls is off"),
])
def test_settings_that_do_not_go_together_stop_the_start(environ, named):
    with pytest.raises(ConfigError, match=named):
        load_config(environ=environ)


def test_unusable_files_stop_the_start_naming_the_setting(pki, tmp_path):
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("not a certificate")
    with pytest.raises(ConfigError, match="scorer_tls_key_file: the key .* does not belong"):
        server_credentials(Config(scorer_tls_cert_file=pki.scorer.cert, scorer_tls_key_file=pki.ingest.key))
    with pytest.raises(ConfigError, match="scorer_tls_client_ca_file: .* holds no PEM certificate"):
        server_credentials(Config(scorer_tls_cert_file=pki.scorer.cert, scorer_tls_key_file=pki.scorer.key,
                                  scorer_tls_client_ca_file=not_pem))
    with pytest.raises(ConfigError, match="scorer_tls_ca_file: .* holds no PEM certificate"):
        channel_tls(Config(scorer_tls=True, scorer_tls_ca_file=not_pem))
    with pytest.raises(ConfigError, match="scorer_tls_client_cert_file: cannot read"):
        channel_tls(Config(scorer_tls=True, scorer_tls_client_cert_file=tmp_path / "missing.crt",
                           scorer_tls_client_key_file=pki.ingest.key))


@pytest.mark.parametrize(("settings", "named"), [
    ({"scorer_tls": True}, "set scorer_tls together with scorer_tls_cert_file"),
    ({"scorer_tls_cert_file": "s.crt", "scorer_tls_key_file": "s.key"}, "set scorer_tls together"),
    ({"scorer_tls": True, "scorer_tls_cert_file": "s.crt", "scorer_tls_key_file": "s.key",
      "scorer_tls_client_ca_file": "ca.crt"}, "set scorer_tls_client_cert_file and scorer_tls_client_key_file"),
])
def test_serve_refuses_a_scorer_and_client_that_could_not_talk(settings, named):
    with pytest.raises(ConfigError, match=named):
        check_serve_channel(load_config(environ={}, **settings))


# --- reflection -----------------------------------------------------------------------------


def _listed_services(target: str) -> list[str]:
    with open_channel(target, None) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        (answer,) = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                               timeout=10)
    return [service.name for service in answer.list_services_response.service]


def test_reflection_is_off_by_default(start_scorer):
    with pytest.raises(grpc.RpcError) as refused:
        _listed_services(start_scorer())
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_reflection_lists_the_services_when_enabled(start_scorer):
    assert SERVICE_NAME in _listed_services(start_scorer(scorer_reflection=True))
