"""The scoring core called in this process: the Scorer that `score` (offline) and tests use.

It runs the very functions the gRPC servicer runs (service.scoring.server), without a network,
and keeps the gRPC scorer's contract: the same size limit (check_crop_size) and the same
refusals, as ScorerRefused with the status name the servicer would send. So a study scored
offline gives the results, and fails for the reasons, that it would in the service
(tests/unit/test_scorer_contract.py holds both to it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import service
from service.errors import ScorerRefused, SignatureError
from service.model import LesionResult, PatientResult, Provenance
from service.scorer import DEFAULT_MAX_MESSAGE_BYTES, ScoredLesions, check_batch_size, check_crop_size
from service.scoring.aggregate import aggregate_patient
from service.scoring.features import engine_versions
from service.model import LesionCrop
from service.scoring.lesion import ScoringContext, score_lesion

ALGORITHM_NAME = "radiomics-cds CD8 radiomics"


def describe_scoring(context: ScoringContext, volume_filter_ml: float) -> Provenance:
    """What a scorer configured with `context` says it is (Describe).

    The settings are given in their JSON form (sorted keys, lists), the form in which they cross
    the wire, so both scorers describe themselves, and write their outputs, identically.
    """
    signature = context.signature
    settings = context.settings.as_dict() | {"volumeFilterMl": volume_filter_ml, "featurePanel": context.panel.name}
    return Provenance(
        algorithm_name=ALGORITHM_NAME, algorithm_version=service.__version__, engine_versions=engine_versions(),
        settings=json.loads(json.dumps(settings, sort_keys=True)),
        signature_id=signature.id, signature_version=signature.version,
        signature_status=signature.status, signature_citation=signature.citation,
    )


class InProcessScorer:
    """A Scorer over a fixed configuration, in this process; safe to call from several threads."""

    def __init__(self, context: ScoringContext, *, volume_filter_ml: float = 1.0,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        context.signature.check_preprocessing(context.settings)
        self._context = context
        self._volume_filter_ml = volume_filter_ml
        self.max_message_bytes = max_message_bytes

    def describe(self) -> Provenance:
        return describe_scoring(self._context, self._volume_filter_ml)

    def check_size(self, crop: LesionCrop) -> None:
        check_crop_size(crop, self.max_message_bytes)

    def score_batch(self, crops: Sequence[LesionCrop]) -> list[LesionResult]:
        check_batch_size(crops, self.max_message_bytes)  # all first, as the gRPC client does before it sends them
        return [self._score(crop) for crop in crops]

    def score_study(self, crops: Sequence[LesionCrop]) -> ScoredLesions:
        lesions = self.score_batch(crops)
        return ScoredLesions(lesions, self.aggregate(lesions))

    def _score(self, crop: LesionCrop) -> LesionResult:
        try:
            return score_lesion(crop, self._context)
        except SignatureError as error:  # the servicer's FAILED_PRECONDITION
            raise ScorerRefused("FAILED_PRECONDITION", f"lesion {crop.number}: {error}") from error

    def aggregate(self, lesions: Sequence[LesionResult]) -> PatientResult:
        return aggregate_patient(lesions, self._context.signature, self._volume_filter_ml)

    def serving(self) -> bool:
        """Always: the scoring core is this process."""
        return True
