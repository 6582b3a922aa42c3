"""How score_lesions splits a study's lesions into calls (service.scorer.batches: one group per
thread, of about equal voxels, each cut to the message limit and the voxel budget, every lesion
once), and what it makes of the calls' answers: results in the study's order, progress once per
batch, at most `parallel` calls at a time, the first failed batch's error (with a scorer that
records its calls: the batching, not the scoring, is under test; the scoring through real
scorers is test_scorer_contract's)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
import pytest

import service.scorer
from service.errors import ScorerRefused
from service.model import ImageGeometry, LesionCrop, LesionSource
from service.scorer import ScoredLesions, batches, crop_message_bytes, score_lesions

GEOMETRY = ImageGeometry(size=(64, 64, 64), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
                         direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))


def _crops(voxels: list[int]) -> list[LesionCrop]:
    return [LesionCrop(number=n, name=f"lesion {n}", source=LesionSource.SEG, source_sop_instance_uid="",
                       tracking_id="", tracking_uid="", anatomic_region=None, volume_geometry=GEOMETRY,
                       crop_start_xyz=(0, 0, 0), image_hu=np.zeros(count, dtype=np.float32),
                       mask=np.ones(count, dtype=bool), kvp=None)
            for n, count in enumerate(voxels, start=1)]


UNLIMITED = 1 << 40


def test_one_thread_sends_the_whole_study_in_one_call_in_its_order() -> None:
    assert batches(_crops([10, 500, 30]), 1, UNLIMITED) == [[0, 1, 2]]


def test_largest_first_to_the_lightest_batch() -> None:
    """100 -> A; 60 -> B; 50 -> B (60 < 100); 40 -> A (100 < 110); 10 -> B (110 < 140).
    A = {100, 40} = 140 voxels, B = {60, 50, 10} = 120: each batch in the study's order."""
    assert batches(_crops([100, 60, 50, 40, 10]), 2, UNLIMITED) == [[0, 3], [1, 2, 4]]


def test_never_more_batches_than_lesions() -> None:
    assert batches(_crops([7, 9]), 8, UNLIMITED) == [[1], [0]]
    assert batches([], 2, UNLIMITED) == []


def test_a_batch_over_the_message_limit_is_cut_in_order() -> None:
    """5 bytes a voxel and 4096: 9096, 8096, 7596 and 7096 bytes against a limit of 16192 (the
    first and last together): 9096 + 8096 is over, 8096 + 7596 fits, + 7096 is over."""
    crops = _crops([1000, 800, 700, 600])
    assert [crop_message_bytes(crop) for crop in crops] == [9096, 8096, 7596, 7096]
    assert batches(crops, 1, 16192) == [[0], [1, 2], [3]]


@pytest.mark.parametrize("count", [1, 2, 3])
def test_every_lesion_once_and_every_batch_within_the_limits(count: int) -> None:
    rng = np.random.default_rng(count)
    crops = _crops([int(v) for v in rng.integers(1, 5000, size=17)])
    limit = 3 * max(crop_message_bytes(crop) for crop in crops)
    cut = batches(crops, count, limit, max_voxels=9000)
    assert sorted(position for batch in cut for position in batch) == list(range(len(crops)))
    assert all(sum(crop_message_bytes(crops[i]) for i in batch) <= limit for batch in cut)
    assert all(sum(crops[i].image_hu.size for i in batch) <= 9000 or len(batch) == 1 for batch in cut)
    assert all(batch == sorted(batch) for batch in cut)


def test_a_large_study_is_cut_to_the_voxel_budget() -> None:
    """Budget 1000: [600, 300] is 900, + 200 would be 1100; a crop alone over it is its own batch."""
    assert batches(_crops([600, 300, 200, 1500, 100]), 1, UNLIMITED, max_voxels=1000) == [[0, 1], [2], [3], [4]]


class RecordingScorer:
    """Answers each lesion with its number, after `delay_s`; records the batches it is sent and
    the most calls in flight at once; refuses batches holding a number in `refuse`."""

    max_message_bytes = UNLIMITED

    def __init__(self, delay_s: float = 0.0, refuse: Sequence[int] = ()) -> None:
        self.batches: list[list[int]] = []
        self.most_at_once = 0
        self._at_once = 0
        self._lock = threading.Lock()
        self._delay_s = delay_s
        self._refuse = set(refuse)

    def check_size(self, crop: LesionCrop) -> None:
        pass

    def score_batch(self, crops: Sequence[LesionCrop]) -> list[SimpleNamespace]:
        with self._lock:
            self._at_once += 1
            self.most_at_once = max(self.most_at_once, self._at_once)
            self.batches.append([crop.number for crop in crops])
        time.sleep(self._delay_s)
        with self._lock:
            self._at_once -= 1
        if refused := self._refuse & {crop.number for crop in crops}:
            raise ScorerRefused("INVALID_ARGUMENT", f"lesion {min(refused)}: refused")
        return [SimpleNamespace(number=crop.number) for crop in crops]

    def score_study(self, crops: Sequence[LesionCrop]) -> ScoredLesions:
        lesions = self.score_batch(crops)
        return ScoredLesions(lesions, ("patient of", [lesion.number for lesion in lesions]))  # type: ignore[arg-type]

    def aggregate(self, lesions: Sequence[SimpleNamespace]) -> tuple[str, list[int]]:
        return "aggregated", [lesion.number for lesion in lesions]


def test_results_come_back_in_the_studys_order_and_are_aggregated_once() -> None:
    scorer = RecordingScorer()
    scored = score_lesions(scorer, _crops([100, 60, 50, 40, 10]), parallel=2)  # type: ignore[arg-type]
    assert sorted(scorer.batches) == [[1, 4], [2, 3, 5]]
    assert [lesion.number for lesion in scored.lesions] == [1, 2, 3, 4, 5]
    assert scored.patient == ("aggregated", [1, 2, 3, 4, 5])


def test_one_batch_is_the_whole_study_with_its_patient_level_in_the_same_call() -> None:
    scorer = RecordingScorer()
    scored = score_lesions(scorer, _crops([100, 60, 50]), parallel=1)  # type: ignore[arg-type]
    assert scorer.batches == [[1, 2, 3]]
    assert scored.patient == ("patient of", [1, 2, 3])


def test_progress_is_told_once_per_batch_failed_or_not() -> None:
    told: list[tuple[int, int, int]] = []
    scorer = RecordingScorer(refuse=[2])
    with pytest.raises(ScorerRefused, match="lesion 2"):
        score_lesions(scorer, _crops([100, 60, 50, 40, 10]), parallel=2,  # type: ignore[arg-type]
                      on_progress=lambda done, total, number: told.append((done, total, number)))
    # Batches [1, 4] and [2, 3, 5], in either order; every lesion counted, the failed batch's too.
    assert told in ([(2, 5, 4), (5, 5, 5)], [(3, 5, 5), (5, 5, 4)])


def test_the_first_failed_batch_in_the_studys_order_is_raised() -> None:
    scorer = RecordingScorer(refuse=[2, 4])  # batches [1, 4] and [2, 3, 5]: both refused
    with pytest.raises(ScorerRefused, match="lesion 4"):
        score_lesions(scorer, _crops([100, 60, 50, 40, 10]), parallel=2)  # type: ignore[arg-type]


def test_never_more_calls_at_once_than_parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two groups of four: two calls at once. Cut to the voxel budget into eight batches: still two."""
    crops = _crops([900] * 8)
    scorer = RecordingScorer(delay_s=0.05)
    score_lesions(scorer, crops, parallel=2)  # type: ignore[arg-type]
    assert len(scorer.batches) == 2 and scorer.most_at_once == 2

    def one_lesion_batches(crops: Sequence[LesionCrop], count: int, max_message_bytes: int) -> list[list[int]]:
        return batches(crops, count, max_message_bytes, max_voxels=1000)

    monkeypatch.setattr(service.scorer, "batches", one_lesion_batches)
    scorer = RecordingScorer(delay_s=0.05)
    score_lesions(scorer, crops, parallel=2)  # type: ignore[arg-type]
    assert len(scorer.batches) == 8 and scorer.most_at_once == 2


def test_a_study_without_lesions_is_aggregated_without_a_call() -> None:
    scorer = RecordingScorer()
    assert score_lesions(scorer, [], parallel=2).patient == ("aggregated", [])  # type: ignore[arg-type]
    assert scorer.batches == []
