"""The one way the rest of the service talks to a scorer, and the one path a study's lesions take.

`Scorer` is what the worker, `score`, and the benchmarks hold: a gRPC client of scorer pods
(service.scoring.client.GrpcScorer) or the scoring core in this process
(service.scoring.in_process.InProcessScorer). Both raise only our errors (errors.ScorerError,
LesionTooLarge), so callers never see grpc types. `score_lesions` is the single path from crops
to results, so every caller checks sizes, batches, parallelises and aggregates the same way.

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

    max_message_bytes: int
    """The largest message this scorer takes: a batch of crops must fit in one."""

    def score_batch(self, crops: Sequence[LesionCrop]) -> list[LesionResult]:
        """Measures, features and signature score of each lesion, in the order given, in one call
        (ScoreLesions); ScorerError when any is not scored."""
        ...

    def score_study(self, crops: Sequence[LesionCrop]) -> ScoredLesions:
        """score_batch over all of a study's lesions, and the patient level, in one call."""
        ...

    def aggregate(self, lesions: Sequence[LesionResult]) -> PatientResult:
        """The patient-level result of a study's lesions."""
        ...

    def serving(self) -> bool:
        """Whether the scorer takes calls now (the ingest role's readiness asks)."""
        ...


DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
"""The largest message between a scorer and its client unless grpc_max_message_bytes says otherwise."""


def crop_message_bytes(crop: LesionCrop) -> int:
    """About what `crop` takes in a message: 5 bytes per voxel (float32 HU and a byte of mask)
    plus its geometry and identity."""
    return 5 * crop.image_hu.size + 4096


def check_crop_size(crop: LesionCrop, max_message_bytes: int) -> None:
    """Raise LesionTooLarge when a crop cannot travel in one message. The in-process scorer
    applies the same limit, so a study `score` accepts is one the service accepts too."""
    size = crop_message_bytes(crop)
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


def batches(crops: Sequence[LesionCrop], count: int, max_message_bytes: int) -> list[list[int]]:
    """The crops' positions in at most `count` batches of about equal work (voxels), each small
    enough for one message: each crop, largest first, joins the batch with the fewest voxels so
    far (a lesion's time follows its voxels); a batch over the limit is then cut in order. One
    call per batch instead of one per lesion saves a round trip per lesion (about 1 to 3 ms
    each), while `count` batches still spread a study over `count` scorers."""
    bins: list[list[int]] = [[] for _ in range(max(1, min(count, len(crops))))]
    voxels = [0] * len(bins)
    for position in sorted(range(len(crops)), key=lambda i: -crops[i].image_hu.size):
        lightest = voxels.index(min(voxels))
        bins[lightest].append(position)
        voxels[lightest] += crops[position].image_hu.size
    cut: list[list[int]] = []
    for positions in bins:
        batch: list[int] = []
        size = 0
        for position in sorted(positions):
            crop_bytes = crop_message_bytes(crops[position])
            if batch and size + crop_bytes > max_message_bytes:
                cut.append(batch)
                batch, size = [], 0
            batch.append(position)
            size += crop_bytes
        cut.append(batch)
    return [batch for batch in cut if batch]


def score_lesions(scorer: Scorer, crops: Sequence[LesionCrop], *, parallel: int = 2,
                  on_progress: LesionProgress | None = None) -> ScoredLesions:
    """Size-check every crop first (a study that cannot be scored fails before any work), score
    them in `parallel` batches from as many threads (a pool of scorers shares one study), then
    aggregate: in the same call when one batch holds the whole study. The lesions of a batch
    that fails count as done for `on_progress`; its error is raised once all have finished."""
    for crop in crops:
        scorer.check_size(crop)
    groups = batches(crops, parallel, scorer.max_message_bytes)
    if len(groups) == 1:
        scored = scorer.score_study(crops)
        _progress(on_progress, crops, 0, groups[0])
        return scored
    results: list[LesionResult | None] = [None] * len(crops)
    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        futures = {pool.submit(scorer.score_batch, [crops[i] for i in group]): group for group in groups}
        done = 0
        for future in as_completed(futures):
            group = futures[future]
            if future.exception() is None:
                for position, result in zip(group, future.result()):
                    results[position] = result
            _progress(on_progress, crops, done, group)
            done += len(group)
        for future in futures:
            future.result()  # the first failed batch's error, once all have finished
    lesions = [result for result in results if result is not None]
    return ScoredLesions(lesions, scorer.aggregate(lesions))


def _progress(on_progress: LesionProgress | None, crops: Sequence[LesionCrop], done: int,
              group: Sequence[int]) -> None:
    """Tell `on_progress` of each lesion of a finished batch."""
    if on_progress is not None:
        for step, position in enumerate(group, start=1):
            on_progress(done + step, len(crops), crops[position].number)
