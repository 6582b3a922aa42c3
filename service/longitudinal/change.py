"""Lesion-level change (docs/method.md 5.1): diameter and volume against the baseline and
the previous time point, and the lesion-wise category of Sun et al. 2022.

D is the longest axial diameter, or the short axis for a lymph node. A split lesion is the sum
of its fragments and a merged one is compared with the sum of the lesions it merged from, as
RECIST 1.1 sums them, so the caller passes `group_size` of each side of a link. Thresholds are
compared on unrounded values (>= and <=); a relative tolerance of 1e-9 only absorbs binary
floating point, so that 12 mm -> 8.4 mm counts as the -30 % it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from service.longitudinal.settings import ChangeSettings
from service.longitudinal.timepoint import TimepointLesion
from service.model import Metric

ZERO_REFERENCE = "the reference is 0: relative change undefined"
SMALL_LESION = "< {limit:g} mm"
BORDERLINE = "borderline: within {margin:g} % of the {threshold:g} % threshold"


class LesionCategory(StrEnum):
    """Lesion-wise response: <= -30 % responding, >= +20 % progressing, else stable (Sun 2022)."""

    RESPONDING = "responding"
    PROGRESSING = "progressing"
    STABLE = "stable"
    NOT_EVALUABLE = "not_evaluable"


@dataclass(frozen=True)
class Size:
    diameter_mm: float  # D
    volume_ml: float


@dataclass(frozen=True)
class SizeChange:
    """Current against one reference time point: absolute (mm, mL) and relative (%)."""

    reference: Size
    delta_mm: float
    percent: Metric
    delta_ml: float
    volume_percent: Metric


@dataclass(frozen=True)
class LesionChange:
    size: Size
    versus_baseline: SizeChange
    versus_previous: SizeChange
    category: LesionCategory  # of the change versus baseline, as in Sun 2022
    category_reason: str | None
    flags: tuple[str, ...]


def group_size(lesions: Sequence[TimepointLesion]) -> Size:
    """The size of a lesion, or of a split's fragments or a merge's sources taken together."""
    return Size(sum(lesion.diameter_mm for lesion in lesions), sum(lesion.volume_ml for lesion in lesions))


def _percent(value: float, reference: float) -> Metric:
    return Metric(100.0 * (value - reference) / reference) if reference > 0 else Metric.not_computable(ZERO_REFERENCE)


def size_change(current: Size, reference: Size) -> SizeChange:
    return SizeChange(reference, current.diameter_mm - reference.diameter_mm,
                      _percent(current.diameter_mm, reference.diameter_mm),
                      current.volume_ml - reference.volume_ml, _percent(current.volume_ml, reference.volume_ml))


def _reached(value: float, threshold: float) -> bool:
    return math.isclose(value, threshold, rel_tol=1e-9, abs_tol=1e-12)


def at_most(value: float, threshold: float) -> bool:
    """value <= threshold, binary floating point aside (12 mm -> 8.4 mm is the -30 % it is)."""
    return value <= threshold or _reached(value, threshold)


def at_least(value: float, threshold: float) -> bool:
    """value >= threshold, binary floating point aside."""
    return value >= threshold or _reached(value, threshold)


def lesion_category(change: SizeChange, settings: ChangeSettings = ChangeSettings()) -> tuple[LesionCategory, str | None]:
    """The category of a diameter change, or not evaluable with the reason."""
    if change.percent.value is None:
        return LesionCategory.NOT_EVALUABLE, change.percent.reason
    pct = change.percent.value
    if at_most(pct, settings.responding_pct):
        return LesionCategory.RESPONDING, None
    if at_least(pct, settings.progressing_pct) and at_least(change.delta_mm, settings.lesion_level_abs_mm):
        return LesionCategory.PROGRESSING, None
    return LesionCategory.STABLE, None


def _flags(current: Size, change: SizeChange, settings: ChangeSettings) -> tuple[str, ...]:
    flags = []
    if 0.0 < current.diameter_mm < settings.small_lesion_mm:
        flags.append(SMALL_LESION.format(limit=settings.small_lesion_mm))
    if change.percent.value is not None:
        for threshold in (settings.responding_pct, settings.progressing_pct):
            if abs(change.percent.value - threshold) <= settings.borderline_margin_pct:
                flags.append(BORDERLINE.format(margin=settings.borderline_margin_pct, threshold=threshold))
    return tuple(flags)


def lesion_change(current: Size, baseline: Size, previous: Size,
                  settings: ChangeSettings = ChangeSettings()) -> LesionChange:
    """Change of one lesion (or link group); at the first follow-up, previous is the baseline."""
    versus_baseline = size_change(current, baseline)
    category, reason = lesion_category(versus_baseline, settings)
    return LesionChange(current, versus_baseline, size_change(current, previous), category, reason,
                        _flags(current, versus_baseline, settings))
