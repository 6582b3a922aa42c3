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
from service.scorer import DEFAULT_MAX_MESSAGE_BYTES, ScoredLesions, check_crop_size
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
        return [codec.lesion_from_pb(lesion) for lesion in self._score_lesions(crops, aggregate_patient=False).lesions]

    def score_study(self, crops: Sequence[LesionCrop]) -> ScoredLesions:
        reply = self._score_lesions(crops, aggregate_patient=True)
        return ScoredLesions([codec.lesion_from_pb(lesion) for lesion in reply.lesions],
                             codec.patient_from_pb(reply.patient))

    def _score_lesions(self, crops: Sequence[LesionCrop], *, aggregate_patient: bool) -> pb.ScoredLesions:
        for crop in crops:
            self.check_size(crop)
        request = pb.ScoreLesionsRequest(lesions=[codec.crop_to_pb(crop) for crop in crops],
                                         aggregate_patient=aggregate_patient)
        with _our_errors():
            return self._stub.ScoreLesions(request, timeout=self._timeout_s)

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
