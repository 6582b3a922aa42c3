"""The gRPC Scorer: what the ingest side uses to reach scorer pods (or serve's scorer child).

Retries UNAVAILABLE (a scorer restarting or scaling) through gRPC's own retry policy, and
spreads calls over every address the target resolves to (round robin), so a headless Service
of several scorer pods shares the lesions of one study. What gRPC still reports is turned into
our errors: ScorerUnavailable (UNAVAILABLE, DEADLINE_EXCEEDED: worth retrying the study later)
or ScorerRefused (any other status), so no grpc type leaves this module.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.errors import ScorerError, ScorerRefused, ScorerUnavailable
from service.model import LesionCrop, LesionResult, PatientResult, Provenance
from service.scorer import DEFAULT_MAX_MESSAGE_BYTES, ScoredLesions, check_batch_size, check_crop_size
from service.scoring import codec
from service.scoring.proto.radiomics_cds.v1 import scoring_pb2 as pb
from service.scoring.proto.radiomics_cds.v1 import scoring_pb2_grpc
from service.scoring.transport import ChannelTls, open_channel

_SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [{
        "name": [{"service": "radiomics_cds.v1.Scoring"}],
        "retryPolicy": {
            "maxAttempts": 5, "initialBackoff": "0.5s", "maxBackoff": "10s",
            "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }],
}
_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
_HEALTH_TIMEOUT_S = 2.0


def _lesions(reply: pb.ScoredLesions) -> list[LesionResult]:
    return [codec.lesion_from_pb(lesion) for lesion in reply.lesions]


def _check_reply(crops: Sequence[LesionCrop], reply: pb.ScoredLesions, aggregate_patient: bool) -> None:
    """ScorerRefused (INTERNAL) when a ScoreLesions reply does not answer its request: a lesion
    missing, out of order or not asked for, or the patient level missing when asked for, would
    otherwise drop a lesion from the study, or aggregate nothing, without a word."""
    sent, answered = [crop.number for crop in crops], [lesion.number for lesion in reply.lesions]
    if answered != sent:
        raise ScorerRefused("INTERNAL", f"the scorer answered lesions {answered} for lesions {sent}")
    if aggregate_patient and not reply.HasField("patient"):
        raise ScorerRefused("INTERNAL", "the scorer answered without the patient level it was asked for")


def _scorer_error(error: grpc.RpcError) -> ScorerError:
    """Our error for a failed call: its status name and details, retryable or not (what a failed
    unary call raises is also a grpc.Call, which has both)."""
    code = error.code()
    kind = ScorerUnavailable if code in _RETRYABLE else ScorerRefused
    return kind(code.name, error.details() or "")


@contextmanager
def _our_errors() -> Iterator[None]:
    try:
        yield
    except grpc.RpcError as error:
        raise _scorer_error(error) from error


class GrpcScorer:
    """A Scorer calling radiomics_cds.v1.Scoring at `target`, over TLS with `tls` (else plaintext)."""

    def __init__(self, target: str, *, tls: ChannelTls | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, timeout_s: float = 600.0) -> None:
        self._target = target
        self._tls = tls
        self._channel = open_channel(target, tls, options=[
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.service_config", json.dumps(_SERVICE_CONFIG)),
            ("grpc.enable_retries", 1),
        ])
        self._stub = scoring_pb2_grpc.ScoringStub(self._channel)
        self.max_message_bytes = max_message_bytes
        self._timeout_s = timeout_s

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Block until the channel connects; ScorerUnavailable after `timeout_s`."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            raise ScorerUnavailable("UNAVAILABLE", f"{self._target}: not connected within {timeout_s:g} s") from None

    def describe(self) -> Provenance:
        with _our_errors():
            return codec.provenance_from_pb(self._stub.Describe(pb.DescribeRequest(), timeout=self._timeout_s))

    def check_size(self, crop: LesionCrop) -> None:
        check_crop_size(crop, self.max_message_bytes)

    def score_batch(self, crops: Sequence[LesionCrop]) -> list[LesionResult]:
        return _lesions(self._score_lesions(crops, aggregate_patient=False))

    def score_study(self, crops: Sequence[LesionCrop]) -> ScoredLesions:
        reply = self._score_lesions(crops, aggregate_patient=True)
        return ScoredLesions(_lesions(reply), codec.patient_from_pb(reply.patient))

    def _score_lesions(self, crops: Sequence[LesionCrop], *, aggregate_patient: bool) -> pb.ScoredLesions:
        """One ScoreLesions call, its reply checked against the request. A scorer of a release
        without ScoreLesions (UNIMPLEMENTED: during a rolling upgrade, scorer pods not yet
        replaced) is called lesion by lesion instead, so no study fails for the upgrade."""
        check_batch_size(crops, self.max_message_bytes)
        request = pb.ScoreLesionsRequest(aggregate_patient=aggregate_patient)
        for crop in crops:
            codec.crop_into_pb(crop, request.lesions.add())
        with _our_errors():
            try:
                reply = self._stub.ScoreLesions(request, timeout=self._timeout_s)
            except grpc.RpcError as error:
                if error.code() is not grpc.StatusCode.UNIMPLEMENTED:
                    raise
                reply = self._lesion_by_lesion(request)
        _check_reply(crops, reply, aggregate_patient)
        return reply

    def _lesion_by_lesion(self, request: pb.ScoreLesionsRequest) -> pb.ScoredLesions:
        """ScoreLesions' answer from ScoreLesion and AggregatePatient, the calls every v1 scorer has."""
        reply = pb.ScoredLesions(lesions=[self._stub.ScoreLesion(lesion, timeout=self._timeout_s)
                                          for lesion in request.lesions])
        if request.aggregate_patient:
            reply.patient.CopyFrom(self._stub.AggregatePatient(
                pb.AggregatePatientRequest(lesions=reply.lesions), timeout=self._timeout_s))
        return reply

    def aggregate(self, lesions: Sequence[LesionResult]) -> PatientResult:
        request = pb.AggregatePatientRequest(lesions=[codec.lesion_to_pb(lesion) for lesion in lesions])
        with _our_errors():
            return codec.patient_from_pb(self._stub.AggregatePatient(request, timeout=self._timeout_s))

    def serving(self) -> bool:
        """grpc.health.v1 says SERVING, asked on a fresh channel with our own credentials: a scorer
        that refuses them is as useless to us as one that is down."""
        with open_channel(self._target, self._tls) as channel:
            try:
                stub = health_pb2_grpc.HealthStub(channel)
                answer = stub.Check(  # type: ignore[attr-defined]  # the stubs omit the client stub's methods
                    health_pb2.HealthCheckRequest(service=""), timeout=_HEALTH_TIMEOUT_S)
            except grpc.RpcError:
                return False
        return answer.status == health_pb2.HealthCheckResponse.SERVING

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GrpcScorer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
