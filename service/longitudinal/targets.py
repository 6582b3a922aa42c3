"""Target lesions, chosen once at baseline (docs/method.md section 5.2; RECIST 1.1).

Every baseline lesion gets a Baseline Category: target, non-target, or non-lesion (a normal
node, SA < 10 mm). Later time points read the categories and never re-select ("once target,
always target"); a lesion first seen later is a non-lesion at baseline, i.e. new.

Selection: a site's designation by ROI name (`^T\\d+` target, `^NT\\d+` non-target) when any
baseline lesion carries one; otherwise automatic. Automatic selection takes the measurable
lesions (non-nodal LD >= 10 mm, and >= 2 x slice thickness on slices thicker than 5 mm; nodes
SA >= 15 mm), never an irradiated one, at most 5 and at most 2 per organ, all nodes one organ.
Round robin by organ: lesions ranked by D within their organ, organs ordered by their largest D,
one per organ per round; ties by tracking UID, so the choice is the same on any replica.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from service.longitudinal.response_settings import RecistSettings, TargetSelection
from service.longitudinal.timepoint import TimepointLesion

NODES_ORGAN = "lymph nodes"


class BaselineCategory(StrEnum):
    TARGET = "target"
    NON_TARGET = "non_target"
    NON_LESION = "non_lesion"  # a normal node at baseline, or a lesion first seen at a follow-up


class SelectionSource(StrEnum):
    SITE_DESIGNATION = "site_designation"
    AUTOMATIC = "automatic"


@dataclass(frozen=True)
class BaselineLesion:
    """One baseline lesion's category and why. `organ` is the key the per-organ limit used."""

    tracking_uid: str
    category: BaselineCategory
    organ: str
    diameter_mm: float
    is_node: bool
    measurable: bool
    reason: str


@dataclass(frozen=True)
class TargetSet:
    source: SelectionSource
    lesions: tuple[BaselineLesion, ...]  # sorted by tracking UID
    organ_key: str  # which organ key was used ("location class", "site organ", ...)
    notes: tuple[str, ...] = ()

    @property
    def targets(self) -> tuple[BaselineLesion, ...]:
        return tuple(lesion for lesion in self.lesions if lesion.category is BaselineCategory.TARGET)

    @property
    def non_targets(self) -> tuple[BaselineLesion, ...]:
        return tuple(lesion for lesion in self.lesions if lesion.category is BaselineCategory.NON_TARGET)

    def category(self, tracking_uid: str) -> BaselineCategory:
        """A lesion not recorded at baseline is a non-lesion at baseline (new)."""
        for lesion in self.lesions:
            if lesion.tracking_uid == tracking_uid:
                return lesion.category
        return BaselineCategory.NON_LESION


def measurable_limit_mm(slice_thickness_mm: float | None, settings: RecistSettings = RecistSettings()) -> float:
    """The non-nodal measurability threshold: 10 mm, or 2 x slice thickness on thick slices."""
    if slice_thickness_mm is not None and slice_thickness_mm > settings.thick_slice_mm:
        return max(settings.min_measurable_ld_mm, 2.0 * slice_thickness_mm)
    return settings.min_measurable_ld_mm


def measurability(lesion: TimepointLesion, slice_thickness_mm: float | None,
                  settings: RecistSettings = RecistSettings()) -> tuple[BaselineCategory, bool, str]:
    """(category if not chosen as target, measurable, reason) by the RECIST 1.1 thresholds."""
    d = lesion.diameter_mm
    if lesion.is_node:
        if d >= settings.node_target_sa_mm:
            return BaselineCategory.NON_TARGET, True, f"node SA {d:g} mm >= {settings.node_target_sa_mm:g} mm: measurable"
        if d >= settings.node_normal_sa_mm:
            return BaselineCategory.NON_TARGET, False, f"node SA {d:g} mm: pathological, not measurable"
        return BaselineCategory.NON_LESION, False, f"node SA {d:g} mm < {settings.node_normal_sa_mm:g} mm: normal"
    limit = measurable_limit_mm(slice_thickness_mm, settings)
    if d >= limit:
        return BaselineCategory.NON_TARGET, True, f"LD {d:g} mm >= {limit:g} mm: measurable"
    return BaselineCategory.NON_TARGET, False, f"LD {d:g} mm < {limit:g} mm: not measurable"


def organ_of(lesion: TimepointLesion, organs: Mapping[str, str], settings: RecistSettings) -> str:
    if lesion.is_node and settings.nodes_one_organ:
        return NODES_ORGAN
    return organs.get(lesion.tracking_uid, lesion.location_class)


def select_targets(lesions: Sequence[TimepointLesion], slice_thickness_mm: float | None,
                   settings: RecistSettings = RecistSettings(), *, organs: Mapping[str, str] | None = None,
                   irradiated: Collection[str] = ()) -> TargetSet:
    """The Baseline Category of every baseline lesion.

    `organs`: tracking UID -> organ key (a SEG anatomic region: service.location.organ_key); a
    lesion without one is keyed by its location class. `irradiated`: tracking UIDs of irradiated
    lesions, never automatic targets (RECIST: not measurable unless progressed).
    """
    organs = organs or {}
    ordered = sorted(lesions, key=lambda lesion: lesion.tracking_uid)
    organ_key = "SEG anatomic region, else location class" if organs else "location class"
    if settings.nodes_one_organ:
        organ_key += "; all nodes one organ"
    target_re = re.compile(settings.target_name_regex, re.IGNORECASE)
    non_target_re = re.compile(settings.non_target_name_regex, re.IGNORECASE)
    if any(target_re.match(x.name.strip()) or non_target_re.match(x.name.strip()) for x in ordered):
        return _designated(ordered, slice_thickness_mm, settings, organs, organ_key, target_re, non_target_re)

    assessed = {x.tracking_uid: measurability(x, slice_thickness_mm, settings) for x in ordered}
    candidates = [x for x in ordered if assessed[x.tracking_uid][1] and x.tracking_uid not in irradiated]
    chosen = _choose(candidates, organs, settings)
    result = []
    for x in ordered:
        category, measurable, reason = assessed[x.tracking_uid]
        if x.tracking_uid in chosen:
            category, reason = BaselineCategory.TARGET, f"{reason}; target ({chosen[x.tracking_uid]})"
        elif measurable and x.tracking_uid in irradiated:
            reason += "; irradiated: not a target"
        elif measurable:
            reason += "; beyond the target limits (5, 2 per organ)"
        result.append(BaselineLesion(x.tracking_uid, category, organ_of(x, organs, settings), x.diameter_mm,
                                     x.is_node, measurable, reason))
    notes = (f"targets chosen automatically: at most {settings.max_targets}, {settings.max_targets_per_organ} "
             f"per organ; the organ: {organ_key}",) if chosen else (
        "no measurable disease at baseline: non-target-only response",)
    return TargetSet(SelectionSource.AUTOMATIC, tuple(result), organ_key, notes)


def _choose(candidates: Sequence[TimepointLesion], organs: Mapping[str, str],
            settings: RecistSettings) -> dict[str, str]:
    """Tracking UID -> how it was chosen, for the chosen targets."""
    by_organ: dict[str, list[TimepointLesion]] = defaultdict(list)
    for x in candidates:
        by_organ[organ_of(x, organs, settings)].append(x)
    for members in by_organ.values():
        members.sort(key=lambda x: (-x.diameter_mm, x.tracking_uid))
    chosen: dict[str, str] = {}
    if settings.target_selection is TargetSelection.LARGEST_FIRST:
        taken: dict[str, int] = defaultdict(int)
        for x in sorted(candidates, key=lambda x: (-x.diameter_mm, x.tracking_uid)):
            organ = organ_of(x, organs, settings)
            if len(chosen) < settings.max_targets and taken[organ] < settings.max_targets_per_organ:
                taken[organ] += 1
                chosen[x.tracking_uid] = f"largest first, {organ}"
        return chosen
    order = sorted(by_organ, key=lambda organ: (-by_organ[organ][0].diameter_mm, by_organ[organ][0].tracking_uid))
    for round_ in range(settings.max_targets_per_organ):
        for organ in order:
            if len(chosen) < settings.max_targets and round_ < len(by_organ[organ]):
                chosen[by_organ[organ][round_].tracking_uid] = f"round {round_ + 1}, {organ}"
    return chosen


def _designated(ordered: Sequence[TimepointLesion], slice_thickness_mm: float | None, settings: RecistSettings,
                organs: Mapping[str, str], organ_key: str, target_re: re.Pattern[str],
                non_target_re: re.Pattern[str]) -> TargetSet:
    """The site's designation by ROI name: T<n> targets, NT<n> non-targets, the rest by measurability."""
    result, notes = [], []
    for x in ordered:
        default, measurable, reason = measurability(x, slice_thickness_mm, settings)
        if target_re.match(x.name.strip()):
            category, reason = BaselineCategory.TARGET, f"{reason}; designated target by ROI name"
            if not measurable:
                notes.append(f"designated target {x.tracking_id} is not measurable by RECIST 1.1 ({reason})")
        else:
            designated = bool(non_target_re.match(x.name.strip()))
            category = BaselineCategory.NON_TARGET if designated else default
            reason += "; designated non-target by ROI name" if designated else "; not designated target"
        result.append(BaselineLesion(x.tracking_uid, category, organ_of(x, organs, settings), x.diameter_mm,
                                     x.is_node, measurable, reason))
    targets = [lesion for lesion in result if lesion.category is BaselineCategory.TARGET]
    if len(targets) > settings.max_targets:
        notes.append(f"{len(targets)} designated targets: more than RECIST's {settings.max_targets}")
    per_organ: dict[str, int] = defaultdict(int)
    for lesion in targets:
        per_organ[lesion.organ] += 1
    notes += [f"{n} designated targets in {organ}: more than RECIST's {settings.max_targets_per_organ} per organ"
              for organ, n in sorted(per_organ.items()) if n > settings.max_targets_per_organ]
    notes.insert(0, f"targets designated by ROI name (target_name_regex {settings.target_name_regex}, "
                    f"non_target_name_regex {settings.non_target_name_regex}), not chosen automatically")
    notes += _larger_than_designated(ordered, result, targets, non_target_re)
    return TargetSet(SelectionSource.SITE_DESIGNATION, tuple(result), organ_key, tuple(notes))


def _larger_than_designated(ordered: Sequence[TimepointLesion], result: Sequence[BaselineLesion],
                            targets: Sequence[BaselineLesion], non_target_re: re.Pattern[str]) -> list[str]:
    """A note naming the measurable lesions not designated (neither target nor non-target) that
    are larger than a designated target: RECIST 1.1 chooses targets by size, and a name that merely looks like a designation
    (a vertebral level: "T11 vertebral body") turns the automatic choice off."""
    smallest = min((lesion.diameter_mm for lesion in targets), default=None)
    if smallest is None:
        return []
    larger = [x.tracking_id for x, lesion in zip(ordered, result)
              if lesion.measurable and lesion.category is not BaselineCategory.TARGET
              and not non_target_re.match(x.name.strip()) and lesion.diameter_mm > smallest]
    if not larger:
        return []
    return [f"measurable lesion(s) not designated but larger than a designated target: {', '.join(larger)}; "
            "check the designation (RECIST 1.1 chooses targets by size)"]
