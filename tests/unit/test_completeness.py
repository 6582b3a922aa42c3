"""Early completeness asks for the CT the scoring reads beyond a contour, no more: the ring, one
resampled voxel and the interpolator's support (service.ingest.completeness.EarlyMargin), taken
from the scoring settings (service.worker.early_margin). Expected margins are the sums written
out here from the settings, not the code's output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.imaging.crops import BSPLINE_PREFILTER_VOXELS
from service.ingest.completeness import EarlyMargin, Outcome, assess
from service.ingest.index import StudyIndex, InstanceRecord
from service.scoring.settings import ExtractionSettings
from service.sop_classes import CT_IMAGE, RT_STRUCTURE_SET
from service.worker import early_margin

STUDY = "1.2.3"


def _record(uid: str, sop_class: str, positions: tuple[float, ...]) -> InstanceRecord:
    return InstanceRecord(uid, sop_class, STUDY, "1.2.3.1", "CT", "1.2.3.9", positions, Path(f"/x/{uid}"), 100.0)


def _decision(tmp_path: Path, contour_planes: tuple[float, ...], slices: np.ndarray,
              margin: EarlyMargin = EarlyMargin()) -> Outcome:
    """A study of one contour object and one CT series, assessed 1 s after its last instance
    (long before the 30 s quiet period)."""
    index = StudyIndex(tmp_path / "index.sqlite")
    index.add_instance(_record("rs", RT_STRUCTURE_SET, contour_planes))
    for k, z in enumerate(slices):
        index.add_instance(_record(f"ct{k}", CT_IMAGE, (float(z),)))
    study = index.study(STUDY)
    assert study is not None
    return assess(study, index.instances(STUDY), now=101.0, quiet_seconds=30, hard_cap_seconds=600,
                  margin=margin).outcome


def test_a_lesion_5_mm_from_the_end_of_a_1_mm_scan_is_complete_without_the_quiet_period(tmp_path) -> None:
    # default settings: ring 2 mm + one 1 mm resampled voxel + one 1 mm slice of linear support = 4 mm
    slices = np.arange(0.0, 100.0, 1.0)  # 0 .. 99 mm
    assert _decision(tmp_path / "a", (40.0, 94.0), slices) is Outcome.READY  # 99 - 94 = 5 >= 4
    assert _decision(tmp_path / "b", (40.0, 96.0), slices) is Outcome.WAIT  # 99 - 96 = 3 < 4 (0.25 slice slack)


def test_thick_slices_need_more_millimetres(tmp_path) -> None:
    # 5 mm slices: 2 + 1 + 5 = 8 mm beyond the contour
    slices = np.arange(0.0, 100.0, 5.0)  # 0 .. 95 mm
    assert _decision(tmp_path / "a", (50.0, 87.0), slices) is Outcome.READY  # 95 - 87 = 8
    assert _decision(tmp_path / "b", (50.0, 90.0), slices) is Outcome.WAIT  # 95 - 90 = 5 < 8


def test_the_lower_end_counts_too(tmp_path) -> None:
    slices = np.arange(0.0, 100.0, 1.0)
    assert _decision(tmp_path / "a", (4.0, 50.0), slices) is Outcome.READY
    assert _decision(tmp_path / "b", (2.0, 50.0), slices) is Outcome.WAIT


def test_a_wider_ring_asks_for_more_ct(tmp_path) -> None:
    slices = np.arange(0.0, 100.0, 1.0)
    wide = early_margin(ExtractionSettings(ringWidthMm=5.0))
    assert _decision(tmp_path / "a", (40.0, 94.0), slices, wide) is Outcome.WAIT  # needs 5 + 1 + 1 = 7 mm
    assert _decision(tmp_path / "b", (40.0, 92.0), slices, wide) is Outcome.READY


@pytest.mark.parametrize("settings, expected_mm_for_1_mm_slices", [
    (ExtractionSettings(), 2.0 + 1.0 + 1 * 1.0),
    (ExtractionSettings(ringWidthMm=0.0), 0.0 + 1.0 + 1 * 1.0),
    (ExtractionSettings(resampledPixelSpacing=(2.0, 2.0, 3.0)), 2.0 + 3.0 + 1 * 1.0),
    # z spacing kept (0) or no resampling: the "new" voxel is one more original slice
    (ExtractionSettings(resampledPixelSpacing=(1.0, 1.0, 0.0)), 2.0 + 0.0 + 2 * 1.0),
    (ExtractionSettings(resampledPixelSpacing=None), 2.0 + 0.0 + 2 * 1.0),
    # cubic B-spline: two slices of support plus the pre-filter's reach the crops are padded with
    (ExtractionSettings(interpolator="sitkBSpline"), 2.0 + 1.0 + (2 + BSPLINE_PREFILTER_VOXELS) * 1.0),
])
def test_margin_follows_the_scoring_settings(settings: ExtractionSettings, expected_mm_for_1_mm_slices: float) -> None:
    assert early_margin(settings).mm(1.0) == pytest.approx(expected_mm_for_1_mm_slices)
