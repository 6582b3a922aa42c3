"""The scoring core over real gRPC: health, round trip, bad requests (TLS and reflection: test_scorer_tls)."""

import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.imaging.crops import lesion_crop
from service.errors import LesionTooLarge
from service.scoring.client import ScoringClient
from service.scoring.lesion import ScoringContext, score_lesion
from service.location import LocationRules
from service.scoring.panel import signature_panel
from service.scoring.proto.radiomics_cds.v1 import scoring_pb2 as pb
from service.scoring.proto.radiomics_cds.v1 import scoring_pb2_grpc
from service.scoring.server import SERVICE_NAME, build_server
from service.scoring.settings import ExtractionSettings
from service.scoring.signatures import load_signature
from tests.unit.test_features import _synthetic_ct

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def context():
    signature = load_signature()
    return ScoringContext(ExtractionSettings(), signature, LocationRules(), signature_panel(signature))


@pytest.fixture(scope="module")
def target(context):
    server, port, _ = build_server(context, "127.0.0.1:0", workers=2)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None)


def test_health_reports_serving_for_the_server_and_the_service(target):
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", SERVICE_NAME):
            assert stub.Check(health_pb2.HealthCheckRequest(service=name)).status == health_pb2.HealthCheckResponse.SERVING


def test_lesion_over_grpc_equals_in_process_scoring(target, context):
    ct, mask = _synthetic_ct((3.1, -2.2, 1.4))
    crop = lesion_crop(ct, mask, context.settings)
    with ScoringClient(target) as client:
        remote = client.score_lesion(crop)
        provenance = client.describe()
        patient = client.aggregate([remote])
    local = score_lesion(crop, context)
    assert remote.features == local.features
    assert remote.score == local.score and remote.volume_ml == local.volume_ml
    assert remote.contributions == local.contributions
    assert provenance.signature_status == "uncalibrated"
    assert provenance.settings["binLowerBound"] == -1000.0 and "pyradiomics" in provenance.engine_versions
    assert patient.n_lesions == 1 and patient.score_stats["min"].value == local.score


def test_malformed_request_is_invalid_argument(target):
    with grpc.insecure_channel(target) as channel:
        stub = scoring_pb2_grpc.ScoringStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.ScoreLesion(pb.ScoreLesionRequest(number=4, crop_start=[0, 0, 0], crop_size=[2, 2, 2]))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "lesion 4" in raised.value.details()


def test_lesion_larger_than_the_message_limit_is_refused_before_sending(context):
    ct, mask = _synthetic_ct((0, 0, 0))
    crop = lesion_crop(ct, mask, context.settings)
    with ScoringClient("127.0.0.1:9", max_message_bytes=1000) as client:
        with pytest.raises(LesionTooLarge, match="grpc_max_message_bytes"):
            client.score_lesion(crop)


def test_generated_code_is_up_to_date(tmp_path):
    """The committed service/scoring/proto is what scripts/gen-protos makes from protos/."""
    pytest.importorskip("grpc_tools")
    subprocess.run(["bash", str(REPO / "scripts" / "gen-protos"), str(tmp_path)], check=True,
                   env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"})
    for name in ("scoring_pb2.py", "scoring_pb2_grpc.py", "scoring_pb2.pyi"):
        generated = (tmp_path / "radiomics_cds" / "v1" / name).read_text()
        committed = (REPO / "service/scoring/proto/radiomics_cds/v1" / name).read_text()
        assert generated == committed, f"{name} is stale: run scripts/gen-protos"
