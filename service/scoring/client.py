"""Client of the scoring core: what the ingest side uses, in-process or across pods.

Retries UNAVAILABLE (a scorer restarting or scaling) through gRPC's own retry policy, and
spreads calls over every address the target resolves to (round robin), so a headless Service
of several scorer pods shares the lesions of one study.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import grpc

from service.errors import LesionTooLarge
from service.model import LesionCrop, LesionResult, PatientResult, Provenance
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


class ScoringClient:
    """Typed calls to radiomics_cds.v1.Scoring, over TLS with `tls` (else plaintext)."""

    def __init__(self, target: str, *, tls: ChannelTls | None = None, max_message_bytes: int = 256 * 1024 * 1024,
                 timeout_s: float = 600.0) -> None:
        self._channel = open_channel(target, tls, options=[
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.service_config", json.dumps(_SERVICE_CONFIG)),
            ("grpc.enable_retries", 1),
        ])
        self._stub = scoring_pb2_grpc.ScoringStub(self._channel)
        self._max_message_bytes = max_message_bytes
        self._timeout_s = timeout_s

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        grpc.channel_ready_future(self._channel).result(timeout=timeout_s)

    def describe(self) -> Provenance:
        return codec.provenance_from_pb(self._stub.Describe(pb.DescribeRequest(), timeout=self._timeout_s))

    def check_size(self, crop: LesionCrop) -> None:
        """Raise LesionTooLarge when a crop cannot travel (about 5 bytes per voxel plus geometry)."""
        size = 5 * crop.image_hu.size + 4096
        if size > self._max_message_bytes:
            raise LesionTooLarge(
                f"lesion {crop.number}: its crop needs about {size} bytes, more than the maximum gRPC "
                f"message size of {self._max_message_bytes} bytes (setting grpc_max_message_bytes)"
            )

    def score_lesion(self, crop: LesionCrop) -> LesionResult:
        self.check_size(crop)
        return codec.lesion_from_pb(self._stub.ScoreLesion(codec.crop_to_pb(crop), timeout=self._timeout_s))

    def aggregate(self, lesions: Sequence[LesionResult]) -> PatientResult:
        request = pb.AggregatePatientRequest(lesions=[codec.lesion_to_pb(lesion) for lesion in lesions])
        return codec.patient_from_pb(self._stub.AggregatePatient(request, timeout=self._timeout_s))

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "ScoringClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
