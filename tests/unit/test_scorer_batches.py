"""How score_lesions splits a study's lesions into calls (service.scorer.batches): at most one
batch per thread, of about equal voxels, each within the message limit, every lesion once."""

from __future__ import annotations

import numpy as np
import pytest

from service.model import ImageGeometry, LesionCrop, LesionSource
from service.scorer import batches, crop_message_bytes

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
def test_every_lesion_once_and_every_batch_within_the_limit(count: int) -> None:
    rng = np.random.default_rng(count)
    crops = _crops([int(v) for v in rng.integers(1, 5000, size=17)])
    limit = 3 * max(crop_message_bytes(crop) for crop in crops)
    cut = batches(crops, count, limit)
    assert sorted(position for batch in cut for position in batch) == list(range(len(crops)))
    assert all(sum(crop_message_bytes(crops[i]) for i in batch) <= limit for batch in cut)
    assert all(batch == sorted(batch) for batch in cut)
