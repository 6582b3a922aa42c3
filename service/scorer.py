"""The one way the rest of the service talks to a scorer, and the one path a study's lesions take.

`Scorer` is what the worker, `score`, and the benchmarks hold: a gRPC client of scorer pods
(service.scoring.client.GrpcScorer) or the scoring core in this process
(service.scoring.in_process.InProcessScorer). Both raise only our errors (errors.ScorerError,
LesionTooLarge), so callers never see grpc types. `score_lesions` is the single path from crops
to results, so every caller checks sizes, parallelises and aggregates the same way.

This module imports neither grpc nor pyradiomics nor SimpleITK: the ingest side can name a
scorer without loading the scoring core.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Protocol

from service.errors import LesionTooLarge
from service.model import LesionCrop, LesionResult, PatientResult, Provenance


class Scorer(Protocol):
    """radiomics_cds.v1.Scoring as Python calls, whatever carries them."""

    def describe(self) -> Provenance:
        """Algorithm, engine versions, extraction settings (crops are cut with them) and signature."""
        ...

    def check_size(self, crop: LesionCrop) -> None:
        """Raise LesionTooLarge when the scorer would refuse `crop` for its size."""
        ...

    def score_lesion(self, crop: LesionCrop) -> LesionResult:
        """Measures, features and signature score of one lesion; ScorerError when not scored."""
        ...

    def aggregate(self, lesions: Sequence[LesionResult]) -> PatientResult:
        """The patient-level result of a study's lesions."""
        ...

    def serving(self) -> bool:
        """Whether the scorer takes calls now (the ingest role's readiness asks)."""
        ...


DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
"""The largest message between a scorer and its client unless grpc_max_message_bytes says otherwise."""


def check_crop_size(crop: LesionCrop, max_message_bytes: int) -> None:
    """Raise LesionTooLarge when a crop cannot travel in one message (about 5 bytes per voxel
    plus geometry). The in-process scorer applies the same limit, so a study `score` accepts is
    one the service accepts too."""
    size = 5 * crop.image_hu.size + 4096
    if size > max_message_bytes:
        raise LesionTooLarge(
            f"lesion {crop.number}: its crop needs about {size} bytes, more than the maximum gRPC "
            f"message size of {max_message_bytes} bytes (setting grpc_max_message_bytes)"
        )


@dataclass(frozen=True)
class ScoredLesions:
    """Every lesion's result, in the order of the crops, and the patient-level result."""

    lesions: list[LesionResult]
    patient: PatientResult


LesionProgress = Callable[[int, int, int], None]
"""Told (lesions done, lesions in all, number of the lesion just done) as each lesion finishes."""


def score_lesions(scorer: Scorer, crops: Sequence[LesionCrop], *, parallel: int = 2,
                  on_progress: LesionProgress | None = None) -> ScoredLesions:
    """Size-check every crop first (a study that cannot be scored fails before any work), score
    them from `parallel` threads (a pool of scorers shares one study), then aggregate. A lesion
    that fails counts as done for `on_progress`; its error is raised once all have finished."""
    for crop in crops:
        scorer.check_size(crop)
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = {pool.submit(scorer.score_lesion, crop): crop.number for crop in crops}
        if on_progress is not None:
            for done, future in enumerate(as_completed(futures), start=1):
                on_progress(done, len(futures), futures[future])
        lesions = [future.result() for future in futures]
    return ScoredLesions(lesions, scorer.aggregate(lesions))
