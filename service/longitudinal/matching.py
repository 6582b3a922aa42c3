"""The matching cascade (docs/method.md 5.1): tracking UID, name, then geometry.

Each stage sees only what earlier stages left. Geometry needs the prior centroids in the
current frame: the identity when both studies share a Frame of Reference, else a mapping the
caller found (Spatial Registration object or rigid registration). Without one, geometric
matching is "not available", not guessed, and nothing unmatched can be called new or
disappeared, since coverage cannot be decided either. Lesions are sorted by tracking UID before
any stage, so ties break the same way whatever order the inputs came in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from service.errors import InputError
from service.longitudinal.frames import FrameMapping, inside_extent
from service.longitudinal.groups import Pair, find_groups
from service.longitudinal.links import Confidence, Link, LinkStatus, MatchMethod
from service.longitudinal.names import normalise_name
from service.longitudinal.settings import MatchSettings
from service.longitudinal.space import Space
from service.longitudinal.timepoint import TimePoint, TimepointLesion, UidSource

NO_MAPPING = "frames of reference differ and no registration is available: geometric matching not available"
OUTSIDE_CURRENT = "outside the current scan's coverage"
OUTSIDE_PRIOR = "outside the prior scan's coverage: not evaluable as new"
UNKNOWN_CURRENT_EXTENT = "the current scan's extent is unknown"
UNKNOWN_PRIOR_EXTENT = "the prior scan's extent is unknown: not evaluable as new"


def match_lesions(current: TimePoint, prior: TimePoint, mapping: FrameMapping | None = None,
                  settings: MatchSettings = MatchSettings()) -> tuple[Link, ...]:
    """Every current and every prior lesion in exactly one link, sorted by tracking UIDs.

    `mapping` takes prior patient coordinates to current ones; it is ignored (the identity is
    used) when both studies share a Frame of Reference UID.
    """
    if current.frame_of_reference_uid == prior.frame_of_reference_uid:
        mapping = FrameMapping.identity()
    space = Space(mapping, settings) if mapping is not None else None
    free_current = _sorted_unique(current.lesions, "current")
    free_prior = _sorted_unique(prior.lesions, "prior")

    links = _match_tracking_uids(free_current, free_prior, space)
    links += _match_names(*_free(links, free_current, free_prior), space, settings)
    free_current, free_prior = _free(links, free_current, free_prior)
    if space is not None:
        links += _match_geometry(free_current, free_prior, space)
        free_current, free_prior = _free(links, free_current, free_prior)
    links += [_unmatched_prior(p, current, space) for p in free_prior]
    links += [_unmatched_current(c, prior, space) for c in free_current]
    return tuple(sorted(links, key=link_order))


def link_order(link: Link) -> tuple[list[str], list[str]]:
    """The order of match_lesions' links: by the current, then the prior lesions' tracking UIDs."""
    return [c.tracking_uid for c in link.current], [p.tracking_uid for p in link.prior]


def _sorted_unique(lesions: Sequence[TimepointLesion], side: str) -> list[TimepointLesion]:
    ordered = sorted(lesions, key=lambda lesion: lesion.tracking_uid)
    uids = [lesion.tracking_uid for lesion in ordered]
    if len(set(uids)) != len(uids):
        raise InputError(f"two {side} lesions share a tracking UID: lesions cannot be told apart")
    return ordered


def _free(links: Sequence[Link], current: Sequence[TimepointLesion],
          prior: Sequence[TimepointLesion]) -> tuple[list[TimepointLesion], list[TimepointLesion]]:
    """The lesions no link uses yet, in their (sorted) order."""
    used = {id(lesion) for link in links for lesion in (*link.current, *link.prior)}
    return [c for c in current if id(c) not in used], [p for p in prior if id(p) not in used]


def _link(status: LinkStatus, method: MatchMethod, confidence: Confidence, current: Sequence[TimepointLesion],
          prior: Sequence[TimepointLesion], space: Space | None, rivals: tuple[str, ...] = ()) -> Link:
    """A link between lesions, with the distance and registration when a mapping exists."""
    return Link(status, method, confidence, tuple(current), tuple(prior),
                distance_mm=space.distance_mm(current, prior) if space else None,
                registration=space.mapping.registration if space else None, rivals=rivals)


def _match_tracking_uids(current: Sequence[TimepointLesion], prior: Sequence[TimepointLesion],
                         space: Space | None) -> list[Link]:
    """Equal tracking UIDs: the same lesion by declaration (a carried UID, a SEG TrackingUID,
    an RTSTRUCT ConceptualVolumeUID), whatever its position."""
    by_uid = {p.tracking_uid: p for p in prior}
    links = []
    for c in current:
        if (p := by_uid.get(c.tracking_uid)) is not None:
            method = (MatchMethod.CONCEPTUAL_VOLUME_UID if c.uid_source is UidSource.CONCEPTUAL_VOLUME_UID
                      else MatchMethod.TRACKING_UID)
            links.append(_link(LinkStatus.MATCHED, method, Confidence.HIGH, [c], [p], space))
    return links


def _match_names(current: Sequence[TimepointLesion], prior: Sequence[TimepointLesion], space: Space | None,
                 settings: MatchSettings) -> list[Link]:
    """Equal normalised names within one location class, when exactly one lesion on each side
    has that name (a repeated name identifies nothing) and, with a mapping, they lie within
    tau_max of each other. Confidence medium with a mapping, low without."""
    def by_name(lesions: Sequence[TimepointLesion]) -> dict[tuple[str, str], list[TimepointLesion]]:
        named: dict[tuple[str, str], list[TimepointLesion]] = defaultdict(list)
        for lesion in lesions:
            if name := normalise_name(lesion.name, settings.name_timepoint_tokens):
                named[(lesion.location_class, name)].append(lesion)
        return named

    current_names, prior_names = by_name(current), by_name(prior)
    confidence = Confidence.MEDIUM if space else Confidence.LOW
    links = []
    for key in sorted(current_names.keys() & prior_names.keys()):
        if len(current_names[key]) != 1 or len(prior_names[key]) != 1:
            continue
        c, p = current_names[key][0], prior_names[key][0]
        if space is None or space.distance_mm([c], [p]) <= settings.tau_max_mm:
            links.append(_link(LinkStatus.MATCHED, MatchMethod.NAME, confidence, [c], [p], space))
    return links


def _match_geometry(current: Sequence[TimepointLesion], prior: Sequence[TimepointLesion], space: Space) -> list[Link]:
    """One-to-one assignment on c_ij within the gates, then splits and merges, then ambiguity."""
    if not current or not prior:
        return []
    feasible = np.asarray([[space.feasible(c, p) for p in prior] for c in current])
    cost = np.asarray([[space.cost(c, p) for p in prior] for c in current])
    # A forbidden pair costs more than all allowed pairs together: the assignment first makes
    # as many allowed pairs as it can, then the cheapest such set.
    forbidden_cost = 1.0 + 2.0 * float(cost[feasible].sum())
    rows, cols = linear_sum_assignment(np.where(feasible, cost, forbidden_cost))
    pairs: list[Pair] = [(current[i], prior[j]) for i, j in zip(rows, cols) if feasible[i, j]]
    paired_free_current = {id(c) for c, _ in pairs}
    paired_free_prior = {id(p) for _, p in pairs}
    groups, left = find_groups(pairs, [c for c in current if id(c) not in paired_free_current],
                               [p for p in prior if id(p) not in paired_free_prior], space)

    links = [_link(LinkStatus.SPLIT if len(cs) > 1 else LinkStatus.MERGED, MatchMethod.GEOMETRY,
                   Confidence.MEDIUM, cs, ps, space) for cs, ps in groups]
    index_current = {id(c): i for i, c in enumerate(current)}
    index_prior = {id(p): j for j, p in enumerate(prior)}
    for c, p in left:
        i, j = index_current[id(c)], index_prior[id(p)]
        limit = space.settings.ambiguity_ratio * cost[i, j]
        rivals = tuple([prior[k].tracking_uid for k in range(len(prior)) if k != j and feasible[i, k] and cost[i, k] <= limit]
                       + [current[k].tracking_uid for k in range(len(current)) if k != i and feasible[k, j] and cost[k, j] <= limit])
        if rivals:
            links.append(_link(LinkStatus.AMBIGUOUS, MatchMethod.GEOMETRY, Confidence.AMBIGUOUS, [c], [p], space, rivals))
        else:
            links.append(_link(LinkStatus.MATCHED, MatchMethod.GEOMETRY, Confidence.MEDIUM, [c], [p], space))
    return links


def _unmatched_prior(lesion: TimepointLesion, current: TimePoint, space: Space | None) -> Link:
    """Disappeared only where the current scan looked; otherwise not evaluable."""
    if space is None:
        return Link(LinkStatus.NOT_EVALUABLE, MatchMethod.NONE, None, (), (lesion,), reason=NO_MAPPING)
    if current.extent is None:
        return Link(LinkStatus.NOT_EVALUABLE, MatchMethod.NONE, None, (), (lesion,), reason=UNKNOWN_CURRENT_EXTENT)
    position = space.mapping.apply(lesion.centroid_mm)
    if inside_extent(current.extent, position, space.settings.coverage_margin_mm):
        return Link(LinkStatus.DISAPPEARED, MatchMethod.NONE, None, (), (lesion,), registration=space.mapping.registration)
    return Link(LinkStatus.NOT_EVALUABLE, MatchMethod.NONE, None, (), (lesion,),
                registration=space.mapping.registration, reason=OUTSIDE_CURRENT)


def _unmatched_current(lesion: TimepointLesion, prior: TimePoint, space: Space | None) -> Link:
    """New (a candidate) only where the prior scan looked; otherwise not evaluable as new."""
    if space is None:
        return Link(LinkStatus.NOT_EVALUABLE, MatchMethod.NONE, None, (lesion,), (), reason=NO_MAPPING)
    if prior.extent is None:
        return Link(LinkStatus.NOT_EVALUABLE, MatchMethod.NONE, None, (lesion,), (), reason=UNKNOWN_PRIOR_EXTENT)
    position = space.mapping.apply_inverse(lesion.centroid_mm)
    if inside_extent(prior.extent, position, space.settings.coverage_margin_mm):
        return Link(LinkStatus.NEW, MatchMethod.NONE, None, (lesion,), (), registration=space.mapping.registration)
    return Link(LinkStatus.NOT_EVALUABLE, MatchMethod.NONE, None, (lesion,), (),
                registration=space.mapping.registration, reason=OUTSIDE_PRIOR)
