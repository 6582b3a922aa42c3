"""The scoring core over real gRPC: health, bad requests, generated code (the same answers as the
in-process scorer: test_scorer_contract; TLS and reflection: test_scorer_tls)."""

import dataclasses
import subprocess
import sys
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.errors import LesionTooLarge, ScorerRefused
from service.imaging.crops import lesion_crop
from service.scoring import codec
from service.scoring.client import GrpcScorer
from service.scoring.lesion import ScoringContext
from service.location import LocationRules
from service.scoring.panel import signature_panel
from service.scoring.proto.radiomics_cds.v1 import scoring_pb2 as pb
from service.scoring.proto.radiomics_cds.v1 import scoring_pb2_grpc
from service.scoring.server import SERVICE_NAME, ScoringServicer, build_server
from service.scoring.settings import ExtractionSettings
from service.scoring.signatures import load_signature
from tests.support.synthetic_lesion import synthetic_lesion_ct

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


def test_malformed_request_is_invalid_argument(target):
    with grpc.insecure_channel(target) as channel:
        stub = scoring_pb2_grpc.ScoringStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.ScoreLesion(pb.ScoreLesionRequest(number=4, crop_start=[0, 0, 0], crop_size=[2, 2, 2]))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "lesion 4" in raised.value.details()


def test_score_lesion_answers_as_score_lesions_does(target, context):
    """API v1 keeps ScoreLesion for one lesion: the same answer as that lesion in a ScoreLesions
    call, which adds the patient level only when asked."""
    ct, mask = synthetic_lesion_ct((0, 0, 0))
    request = codec.crop_to_pb(lesion_crop(ct, mask, context.settings))
    with grpc.insecure_channel(target) as channel:
        stub = scoring_pb2_grpc.ScoringStub(channel)
        single = stub.ScoreLesion(request)
        batch = stub.ScoreLesions(pb.ScoreLesionsRequest(lesions=[request, request]))
        study = stub.ScoreLesions(pb.ScoreLesionsRequest(lesions=[request], aggregate_patient=True))
    assert list(batch.lesions) == [single, single] and not batch.HasField("patient")
    assert list(study.lesions) == [single]
    assert study.patient.n_lesions == 1 and study.patient.n_computable == 1


def test_a_malformed_lesion_fails_the_whole_batch_naming_it(target, context):
    ct, mask = synthetic_lesion_ct((0, 0, 0))
    good = codec.crop_to_pb(lesion_crop(ct, mask, context.settings))
    with grpc.insecure_channel(target) as channel:
        stub = scoring_pb2_grpc.ScoringStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.ScoreLesions(pb.ScoreLesionsRequest(
                lesions=[good, pb.ScoreLesionRequest(number=7, crop_start=[0, 0, 0], crop_size=[2, 2, 2])]))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith("lesion 7: ")


@contextmanager
def _serving(servicer):
    """A gRPC server on loopback with `servicer` as its Scoring service; its target."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    scoring_pb2_grpc.add_ScoringServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


class _EarlierRelease(ScoringServicer):
    """A scorer of a release before ScoreLesions: the generated base answers UNIMPLEMENTED."""

    ScoreLesions = scoring_pb2_grpc.ScoringServicer.ScoreLesions


class _ShortAnswer(ScoringServicer):
    """A faulty scorer (no real one answers so): its reply drops the last lesion, and the
    patient level it was asked for."""

    def ScoreLesions(self, request, context):  # noqa: N802
        reply = super().ScoreLesions(request, context)
        return pb.ScoredLesions(lesions=reply.lesions[:-1])


def _two_crops(context):
    """Lesions 1 and 2 (the synthetic CT's lesion is numbered 1)."""
    return [dataclasses.replace(lesion_crop(*synthetic_lesion_ct(offset), context.settings), number=number)
            for number, offset in ((1, (0, 0, 0)), (2, (6.1, -4.3, 2.2)))]


def test_a_scorer_without_score_lesions_is_called_lesion_by_lesion(context):
    """During a rolling upgrade a new ingest meets scorers of the release before: the same
    answers, from ScoreLesion and AggregatePatient, instead of a failed study."""
    crops = _two_crops(context)
    with _serving(ScoringServicer(context, 1.0, 1 << 26)) as current, \
            _serving(_EarlierRelease(context, 1.0, 1 << 26)) as earlier:
        with GrpcScorer(current) as new, GrpcScorer(earlier) as old:
            assert old.score_study(crops) == new.score_study(crops)
            assert old.score_batch(crops[::-1]) == new.score_batch(crops[::-1])


def test_a_reply_that_does_not_answer_the_request_is_refused(context):
    crops = _two_crops(context)
    with _serving(_ShortAnswer(context, 1.0, 1 << 26)) as target, GrpcScorer(target) as client:
        with pytest.raises(ScorerRefused) as short:
            client.score_batch(crops)
        with pytest.raises(ScorerRefused):
            client.score_study(crops[:1])  # one lesion, none back
    assert short.value.code == "INTERNAL"
    assert short.value.details == "the scorer answered lesions [1] for lesions [1, 2]"


def test_lesion_larger_than_the_message_limit_is_refused_before_sending(context):
    ct, mask = synthetic_lesion_ct((0, 0, 0))
    crop = lesion_crop(ct, mask, context.settings)
    with GrpcScorer("127.0.0.1:9", max_message_bytes=1000) as client:
        with pytest.raises(LesionTooLarge, match="grpc_max_message_bytes"):
            client.score_batch([crop])


def test_generated_code_is_up_to_date(tmp_path):
    """The committed service/scoring/proto is what scripts/gen-protos makes from protos/."""
    pytest.importorskip("grpc_tools")
    subprocess.run(["bash", str(REPO / "scripts" / "gen-protos"), str(tmp_path)], check=True,
                   env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"})
    for name in ("scoring_pb2.py", "scoring_pb2_grpc.py", "scoring_pb2.pyi"):
        generated = (tmp_path / "radiomics_cds" / "v1" / name).read_text()
        committed = (REPO / "service/scoring/proto/radiomics_cds/v1" / name).read_text()
        assert generated == committed, f"{name} is stale: run scripts/gen-protos"
