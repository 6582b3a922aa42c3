"""Settings of lesion matching and lesion-level change (docs/method.md 5.1), with their defaults.

The matching gates are engineering defaults, not literature values: they allow
for rigid-registration residuals of soft-tissue organs and for lesion growth.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.longitudinal.names import DEFAULT_TIMEPOINT_TOKENS


@dataclass(frozen=True)
class MatchSettings:
    k: float = 1.0  # gate = clamp(k * (r_i + r_j), tau_min, tau_max)
    tau_min_mm: float = 10.0
    tau_max_mm: float = 30.0
    ambiguity_ratio: float = 1.25  # a rival within this factor of the best cost: ambiguous
    coverage_margin_mm: float = 10.0
    min_volume_ratio: float = 0.5  # split / merge: total current / total prior volume
    max_volume_ratio: float = 2.0
    name_timepoint_tokens: str = DEFAULT_TIMEPOINT_TOKENS


@dataclass(frozen=True)
class ChangeSettings:
    responding_pct: float = -30.0  # Sun 2022: a decrease of at least 30 %
    progressing_pct: float = 20.0  # Sun 2022: an increase of at least 20 %
    lesion_level_abs_mm: float = 0.0  # Sun 2022 uses percentages only; > 0 adds an absolute rule
    borderline_margin_pct: float = 2.0
    small_lesion_mm: float = 5.0  # measured value kept, flagged (docs/method.md 5.1)


@dataclass(frozen=True)
class ComparabilityTolerances:
    """How far acquisition may differ before radiomic deltas are "not comparable".

    Not in the literature: kVp is a discrete setting that shifts HU, so any change counts; 0.1 mm
    of slice thickness absorbs header rounding only. Kernels must be equal (case and spaces aside).
    """

    kvp: float = 0.0
    slice_thickness_mm: float = 0.1
