"""The scoring core as a gRPC server (radiomics_cds.v1.Scoring + grpc.health.v1, and server
reflection only when asked: it lists the API to anyone who can connect).

Stateless: each request carries its lesion crop, so any number of replicas can serve one client.
A request larger than `max_message_bytes` is refused by gRPC itself (RESOURCE_EXHAUSTED) before
it reaches us; our client checks the size first and fails the study with a message naming the
setting (LesionTooLarge, service.scorer.check_crop_size), before any lesion is sent.
"""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service.errors import ConfigError, SignatureError
from service.model import LesionResult
from service.scorer import DEFAULT_MAX_MESSAGE_BYTES
from service.observability import LESION_SECONDS, LESIONS_IN_PROGRESS, LESIONS_SCORED
from service.scoring import codec
from service.scoring.aggregate import aggregate_patient
from service.scoring.in_process import describe_scoring
from service.scoring.lesion import ScoringContext, score_lesion
from service.scoring.proto.radiomics_cds.v1 import scoring_pb2 as pb
from service.scoring.proto.radiomics_cds.v1 import scoring_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Scoring"].full_name


class ScoringServicer(scoring_pb2_grpc.ScoringServicer):
    """Implements radiomics_cds.v1.Scoring over a fixed configuration."""

    def __init__(self, context: ScoringContext, volume_filter_ml: float, max_message_bytes: int) -> None:
        context.signature.check_preprocessing(context.settings)
        self._context = context
        self._volume_filter_ml = volume_filter_ml
        # The configuration is fixed, so its description is built once: the first build reads
        # every installed distribution's metadata (engine versions by distribution name, about
        # 0.4 s), which the first study would otherwise wait for.
        self._description = codec.provenance_to_pb(describe_scoring(context, volume_filter_ml), max_message_bytes)

    def ScoreLesion(self, request: pb.ScoreLesionRequest, context: grpc.ServicerContext) -> pb.LesionScore:  # noqa: N802
        return codec.lesion_to_pb(self._score(request, context))

    def ScoreLesions(self, request: pb.ScoreLesionsRequest, context: grpc.ServicerContext) -> pb.ScoredLesions:  # noqa: N802
        """Every lesion in turn (the first refused ends the call: its study fails anyway), then the
        patient level over their results when asked. A call that has ended (deadline, client
        gone, the scorer's grace period over) scores no further lesion: nobody would receive it,
        and a stopping scorer would otherwise run on until killed."""
        lesions: list[LesionResult] = []
        for lesion in request.lesions:
            if not context.is_active():  # the client's deadline passed, it cancelled, or the grace period ended
                unscored = len(request.lesions) - len(lesions)
                # Said here because nobody receives the abort: why a batch stopped short (its study is retried)
                log.warning("a ScoreLesions call ended (deadline, cancelled, or the grace period over): %d of %d "
                            "lesions not scored", unscored, len(request.lesions))
                context.abort(grpc.StatusCode.CANCELLED, f"lesion {lesion.number}: the call ended before it was scored")
            lesions.append(self._score(lesion, context))
        reply = pb.ScoredLesions(lesions=[codec.lesion_to_pb(lesion) for lesion in lesions])
        if request.aggregate_patient:
            reply.patient.CopyFrom(self._aggregate(lesions))
        return reply

    def _score(self, request: pb.ScoreLesionRequest, context: grpc.ServicerContext) -> LesionResult:
        """One lesion, counted and timed; a malformed crop or a signature that refuses it aborts
        the call with the lesion's number."""
        with LESIONS_IN_PROGRESS.track_inprogress(), LESION_SECONDS.time():
            try:
                crop = codec.crop_from_pb(request)
            except ValueError as error:
                LESIONS_SCORED.labels("refused").inc()
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"lesion {request.number}: {error}")
            try:
                lesion = score_lesion(crop, self._context)
            except SignatureError as error:
                LESIONS_SCORED.labels("refused").inc()
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"lesion {request.number}: {error}")
            except Exception:  # gRPC reports it as UNKNOWN to the client; counted here to be seen
                LESIONS_SCORED.labels("error").inc()
                raise
            LESIONS_SCORED.labels("scored" if lesion.score is not None else "not_computable").inc()
            return lesion

    def AggregatePatient(  # noqa: N802
        self, request: pb.AggregatePatientRequest, context: grpc.ServicerContext
    ) -> pb.PatientScore:
        return self._aggregate([codec.lesion_from_pb(lesion) for lesion in request.lesions])

    def _aggregate(self, lesions: list[LesionResult]) -> pb.PatientScore:
        """The patient level of a study's lesions (AggregatePatient, or ScoreLesions when asked)."""
        return codec.patient_to_pb(aggregate_patient(lesions, self._context.signature, self._volume_filter_ml))

    def Describe(self, request: pb.DescribeRequest, context: grpc.ServicerContext) -> pb.ScorerDescription:  # noqa: N802
        return self._description


def build_server(
    context: ScoringContext, address: str, *, volume_filter_ml: float = 1.0,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, workers: int = 4,
    credentials: grpc.ServerCredentials | None = None, reflection_enabled: bool = False,
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """A ready-to-start server bound to `address`, over TLS with `credentials` (else plaintext);
    returns (server, bound port, its health servicer: the scorer role turns it NOT_SERVING when
    it stops)."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # Clients re-resolve DNS only when a connection ends: closing connections after 5 minutes
        # lets ingest pods find scorer pods an autoscaler added. A call in flight keeps its
        # connection up to the client's 10-minute call timeout.
        ("grpc.max_connection_age_ms", 5 * 60 * 1000),
        ("grpc.max_connection_age_grace_ms", 10 * 60 * 1000),
        # gRPC binds with SO_REUSEPORT by default: a second scorer on a port another one (a
        # leftover of an earlier `serve`) still holds would start and share its calls.
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=options)
    scoring_pb2_grpc.add_ScoringServicer_to_server(
        ScoringServicer(context, volume_filter_ml, max_message_bytes), server
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    if reflection_enabled:
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
        )
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError:  # gRPC says only that the bind failed; most often the port is taken
        raise ConfigError(f"scorer_address: cannot listen on {address} (in use by another process, "
                          "or not an address of this host)") from None
    return server, port, health_servicer
