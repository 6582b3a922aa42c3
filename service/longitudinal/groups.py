"""Second matching pass: splits (one prior -> several current) and merges (the reverse).

docs/method.md 5.1: with the same gate, one-to-many and many-to-one links among lesions the
one-to-one assignment left over, when the total volumes are consistent (ratio 0.5-2). The
assignment has already paired a parent with its nearest fragment, so that pair is the seed a
group grows from. A lesion joins a group only if it brings the volume ratio closer to 1: a small
new lesion next to a stable one then stays new instead of being swallowed as a fragment.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from service.longitudinal.space import Space
from service.longitudinal.timepoint import TimepointLesion

Pair = tuple[TimepointLesion, TimepointLesion]  # (current, prior)
Group = tuple[tuple[TimepointLesion, ...], tuple[TimepointLesion, ...]]  # (current, prior)


def _volume(lesions: Sequence[TimepointLesion]) -> float:
    return sum(lesion.volume_ml for lesion in lesions)


def _imbalance(ratio: float) -> float:
    """Distance of a volume ratio from 1, symmetric for growth and shrinkage."""
    return abs(math.log(ratio)) if 0.0 < ratio < math.inf else math.inf


def _ratio(current: Sequence[TimepointLesion], prior: Sequence[TimepointLesion]) -> float:
    denominator = _volume(prior)
    return _volume(current) / denominator if denominator > 0 else math.inf


def _grow(seed: list[TimepointLesion], candidates: Sequence[TimepointLesion],
          ratio: Callable[[list[TimepointLesion]], float], space: Space) -> list[TimepointLesion]:
    """The seed plus the candidates (taken in order) that bring the ratio closer to 1.

    Returns a group of two or more within the allowed volume ratio, else an empty list.
    """
    group = list(seed)
    best = _imbalance(ratio(group)) if group else math.inf
    for candidate in candidates:
        trial = [*group, candidate]
        if (imbalance := _imbalance(ratio(trial))) < best:
            group, best = trial, imbalance
    s = space.settings
    return group if len(group) >= 2 and s.min_volume_ratio <= ratio(group) <= s.max_volume_ratio else []


def find_groups(pairs: Sequence[Pair], free_current: Sequence[TimepointLesion],
                free_prior: Sequence[TimepointLesion], space: Space) -> tuple[list[Group], list[Pair]]:
    """(split and merge groups, the one-to-one pairs left). Splits are sought first.

    Inputs are sorted by tracking UID and candidates by (cost, UID), so the result does not
    depend on the order lesions came in.
    """
    partner_of_prior = {p.tracking_uid: c for c, p in pairs}
    partner_of_current = {c.tracking_uid: p for c, p in pairs}
    taken_current: set[str] = set()
    taken_prior: set[str] = set()
    groups: list[Group] = []

    for parent in sorted([p for _, p in pairs] + list(free_prior), key=lambda lesion: lesion.tracking_uid):
        seed = [partner_of_prior[parent.tracking_uid]] if parent.tracking_uid in partner_of_prior else []
        candidates = sorted((c for c in free_current if c.tracking_uid not in taken_current and space.feasible(c, parent)),
                            key=lambda c: (space.cost(c, parent), c.tracking_uid))
        fragments = _grow(seed, candidates, lambda group: _ratio(group, [parent]), space)
        if fragments:
            groups.append((tuple(fragments), (parent,)))
            taken_current.update(c.tracking_uid for c in fragments)
            taken_prior.add(parent.tracking_uid)

    for merged in sorted([c for c, _ in pairs] + list(free_current), key=lambda lesion: lesion.tracking_uid):
        if merged.tracking_uid in taken_current:
            continue
        partner = partner_of_current.get(merged.tracking_uid)
        seed = [partner] if partner is not None and partner.tracking_uid not in taken_prior else []
        candidates = sorted((p for p in free_prior if p.tracking_uid not in taken_prior and space.feasible(merged, p)),
                            key=lambda p: (space.cost(merged, p), p.tracking_uid))
        sources = _grow(seed, candidates, lambda group: _ratio([merged], group), space)
        if sources:
            groups.append(((merged,), tuple(sources)))
            taken_current.add(merged.tracking_uid)
            taken_prior.update(p.tracking_uid for p in sources)

    left = [(c, p) for c, p in pairs if c.tracking_uid not in taken_current and p.tracking_uid not in taken_prior]
    return groups, left
