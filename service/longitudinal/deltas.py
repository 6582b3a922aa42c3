"""Deltas of the CD8 score and of every feature between two time points (docs/method.md 5.1).

A radiomic value depends on how it was extracted and on how the CT was acquired, so a delta is
only meaningful when extraction settings, signature and version, kVp, kernel and slice
thickness all agree. The numbers are still reported when they do not, marked not comparable
with the reasons, so a reader sees both the value and why it must not be trusted. An attribute
missing from either study counts as a difference: equality cannot be shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.longitudinal.settings import ComparabilityTolerances
from service.longitudinal.timepoint import ExtractionContext, TimepointLesion
from service.model import Metric

ZERO_PRIOR = "the prior value is 0: relative change undefined"
SCORE = "score"


@dataclass(frozen=True)
class Comparability:
    """Why deltas between two studies are not comparable; none: they are."""

    reasons: tuple[str, ...] = ()

    @property
    def comparable(self) -> bool:
        return not self.reasons


@dataclass(frozen=True)
class ValueDelta:
    """One value at two time points. `name` is "score" or "<region>/<feature>"."""

    name: str
    current: float | None
    prior: float | None
    delta: Metric
    relative_percent: Metric
    comparability: Comparability


def _number_differs(name: str, current: float | None, prior: float | None, tolerance: float) -> list[str]:
    if current is None or prior is None:
        return [f"{name} not recorded in both studies"]
    return [f"{name} differs ({prior:g} -> {current:g})"] if abs(current - prior) > tolerance else []


def _kernel(value: str | None) -> str | None:
    return " ".join(value.casefold().split()) if value is not None else None


def comparability(current: ExtractionContext, prior: ExtractionContext,
                  tolerances: ComparabilityTolerances = ComparabilityTolerances()) -> Comparability:
    """The reasons radiomic deltas between the two studies are not comparable, if any."""
    reasons = []
    if current.settings != prior.settings:
        reasons.append("extraction settings differ")
    if (current.signature_id, current.signature_version) != (prior.signature_id, prior.signature_version):
        reasons.append(f"signature differs ({prior.signature_id} {prior.signature_version} -> "
                       f"{current.signature_id} {current.signature_version})")
    now, then = current.acquisition, prior.acquisition
    reasons += _number_differs("kVp", now.kvp, then.kvp, tolerances.kvp)
    reasons += _number_differs("slice thickness (mm)", now.slice_thickness_mm, then.slice_thickness_mm,
                               tolerances.slice_thickness_mm)
    if _kernel(now.convolution_kernel) is None or _kernel(then.convolution_kernel) is None:
        reasons.append("convolution kernel not recorded in both studies")
    elif _kernel(now.convolution_kernel) != _kernel(then.convolution_kernel):
        reasons.append(f"convolution kernel differs ({then.convolution_kernel} -> {now.convolution_kernel})")
    return Comparability(tuple(reasons))


def value_delta(name: str, current: float | None, prior: float | None, comparable: Comparability) -> ValueDelta:
    """Absolute and relative (against |prior|, so the sign follows the change) delta of one value."""
    if current is None or prior is None:
        missing = Metric.not_computable(f"{name} not available in both studies")
        return ValueDelta(name, current, prior, missing, missing, comparable)
    relative = Metric(100.0 * (current - prior) / abs(prior)) if prior != 0 else Metric.not_computable(ZERO_PRIOR)
    return ValueDelta(name, current, prior, Metric(current - prior), relative, comparable)


def radiomic_deltas(current: TimepointLesion, prior: TimepointLesion, comparable: Comparability) -> tuple[ValueDelta, ...]:
    """The CD8 score delta first, then every feature of either study, sorted by region and name.

    Only for one-to-one links: a split's fragments or a merge's sources have no single value.
    """
    keys = sorted({(region, name) for lesion in (current, prior) for region, values in lesion.features.items()
                   for name in values})
    return (value_delta(SCORE, current.score, prior.score, comparable),
            *(value_delta(f"{region}/{name}", current.features.get(region, {}).get(name),
                          prior.features.get(region, {}).get(name), comparable) for region, name in keys))
