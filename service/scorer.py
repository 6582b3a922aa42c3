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
    """The largest message this scorer takes: a batch of crops must fit in one (check_batch_size)."""

    def score_batch(self, crops: Sequence[LesionCrop]) -> list[LesionResult]:
        """Measures, features and signature score of each lesion, in the order given, in one call
        (ScoreLesions); LesionTooLarge when the batch cannot travel in one message
        (check_batch_size), ScorerError when any lesion is not scored."""
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


def check_batch_size(crops: Sequence[LesionCrop], max_message_bytes: int) -> None:
    """Raise LesionTooLarge when a crop, or the crops together, cannot travel in one message:
    both scorers refuse the same batches (score_lesions makes none too large)."""
    for crop in crops:
        check_crop_size(crop, max_message_bytes)
    size = sum(crop_message_bytes(crop) for crop in crops)
    if size > max_message_bytes:
        numbers = ", ".join(str(crop.number) for crop in crops)
        raise LesionTooLarge(
            f"lesions {numbers}: together about {size} bytes, more than the maximum gRPC message size of "
            f"{max_message_bytes} bytes (setting grpc_max_message_bytes): send them in smaller batches"
        )


@dataclass(frozen=True)
class ScoredLesions:
    """Every lesion's result, in the order of the crops, and the patient-level result."""

    lesions: list[LesionResult]
    patient: PatientResult


LesionProgress = Callable[[int, int, int], None]
"""Told (lesions done, lesions in all, number of the last lesion done) as each batch of lesions
finishes."""

BATCH_VOXELS = 4_000_000
"""At most this many crop voxels in one call, unless a single crop is larger: about a second or
two of the full panel on one core (a 100 mL lesion's crop is about 0.7 million voxels). A call
holds a scorer thread until it is done, so bounding it keeps another study's lesions from
waiting long behind a large study (concurrent_studies), a stopping scorer's calls within its
grace period, and a call within its deadline."""


def batches(crops: Sequence[LesionCrop], count: int, max_message_bytes: int,
            max_voxels: int = BATCH_VOXELS) -> list[list[int]]:
    """The crops' positions in batches, one call each: `count` groups of about equal work
    (voxels: a lesion's time follows them), each crop, largest first, joining the group with the
    fewest voxels so far; then each group cut, in the study's order, where a batch would exceed
    the message limit or `max_voxels`. A study of a few small lesions travels in `count` calls
    (one call per lesion cost a round trip each, about 1 to 3 ms), a large one in more, each
    bounded; `count` threads send them (score_lesions), so a study still spreads over `count`
    scorers."""
    groups: list[list[int]] = [[] for _ in range(max(1, min(count, len(crops))))]
    voxels = [0] * len(groups)
    for position in sorted(range(len(crops)), key=lambda i: -crops[i].image_hu.size):
        lightest = voxels.index(min(voxels))
        groups[lightest].append(position)
        voxels[lightest] += crops[position].image_hu.size
    cut: list[list[int]] = []
    for group in groups:
        batch: list[int] = []
        size = batch_voxels = 0
        for position in sorted(group):
            crop_bytes, crop_voxels = crop_message_bytes(crops[position]), crops[position].image_hu.size
            if batch and (size + crop_bytes > max_message_bytes or batch_voxels + crop_voxels > max_voxels):
                cut.append(batch)
                batch, size, batch_voxels = [], 0, 0
            batch.append(position)
            size += crop_bytes
            batch_voxels += crop_voxels
        cut.append(batch)
    return [batch for batch in cut if batch]


def score_lesions(scorer: Scorer, crops: Sequence[LesionCrop], *, parallel: int = 2,
                  on_progress: LesionProgress | None = None) -> ScoredLesions:
    """Size-check every crop first (a study that cannot be scored fails before any work), score
    them in batches (`batches`) from `parallel` threads (a pool of scorers shares one study), then
    aggregate: in the same call when one batch holds the whole study. The lesions of a batch
    that fails count as done for `on_progress`; the first failed batch's error (in the study's
    order) is raised once all have finished."""
    if not crops:
        return ScoredLesions([], scorer.aggregate([]))
    for crop in crops:
        scorer.check_size(crop)
    groups = batches(crops, parallel, scorer.max_message_bytes)
    if len(groups) == 1:
        try:
            return scorer.score_study(crops)
        finally:
            _progress(on_progress, crops, len(crops))
    results: dict[int, LesionResult] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(groups)))) as pool:
        futures = {pool.submit(scorer.score_batch, [crops[i] for i in group]): group for group in groups}
        done = 0
        for future in as_completed(futures):
            group = futures[future]
            if future.exception() is None:
                results.update(zip(group, future.result(), strict=True))
            done += len(group)
            _progress(on_progress, crops, done, group[-1])
        for future in futures:
            future.result()  # the first failed batch's error, once all have finished
    lesions = [results[position] for position in range(len(crops))]
    return ScoredLesions(lesions, scorer.aggregate(lesions))


def _progress(on_progress: LesionProgress | None, crops: Sequence[LesionCrop], done: int,
              last: int | None = None) -> None:
    """Tell `on_progress` once per finished batch (a display may throttle what it is told):
    `done` lesions, the batch's last at position `last` (else the study's last)."""
    if on_progress is not None:
        on_progress(done, len(crops), crops[len(crops) - 1 if last is None else last].number)
