"""The tracking identity each current lesion carries (docs/method.md 5.1).

A lesion keeps one tracking UID across studies, as DICOM intends for Tracking UID (112040):
- matched (by any method): the prior lesion's UID and identifier are carried forward;
- split: each fragment gets a UID derived from (parent UID, rank by volume, largest first) and
  records the parent as "derived from";
- merge: the merged lesion keeps the UID of a merged baseline target first, else of a baseline
  non-target, else of any merged prior lesion, the largest baseline diameter among equals; the
  others are recorded as merged into it (0 mm). A target that coalesced with a larger lesion
  first seen later (a new lesion) is measured as the coalesced mass (RECIST 1.1 appendix II),
  not counted 0 mm: that would read as a target complete response;
- new, not evaluable, or ambiguous: the lesion keeps its own UID. An ambiguous link goes to
  review, and a UID carried on a guess would spread the wrong identity to every later study.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from service.longitudinal.links import Link, LinkStatus
from service.longitudinal.targets import BaselineCategory
from service.longitudinal.timepoint import TimepointLesion
from service.uids import derived_uid


@dataclass(frozen=True)
class CarriedIdentity:
    """The identity a current lesion is reported under.

    `derived_from_uid`: a split fragment's parent. `absorbed_uids`: lesions merged into this one,
    at this study or (service.follow_up) an earlier one: 0 mm from then on.
    """

    tracking_uid: str
    tracking_id: str
    derived_from_uid: str | None = None
    absorbed_uids: tuple[str, ...] = ()


def fragment_uid(parent_uid: str, rank: int) -> str:
    """The UID of the rank-th largest fragment of a split lesion: the same on any replica."""
    return derived_uid("tracking-fragment", [parent_uid, str(rank)])


def carried_identities(links: Sequence[Link], baseline_diameter_mm: Mapping[str, float] | None = None,
                       categories: Mapping[str, str] | None = None) -> dict[str, CarriedIdentity]:
    """Current lesion's own tracking UID -> the identity it must carry.

    `categories` (prior tracking UID -> its Baseline Category, a BaselineCategory value) and
    then `baseline_diameter_mm` (prior tracking UID -> D at baseline) decide which UID a merge
    keeps; without the diameters, D at the prior time point stands in. Ties go to the smaller
    UID.
    """
    identities: dict[str, CarriedIdentity] = {}
    for link in links:
        if link.status is LinkStatus.MATCHED:
            (current,), (prior,) = link.current, link.prior
            identities[current.tracking_uid] = CarriedIdentity(prior.tracking_uid, prior.tracking_id)
        elif link.status is LinkStatus.SPLIT:
            identities.update(_split(link.current, link.prior[0]))
        elif link.status is LinkStatus.MERGED:
            kept = _kept_in_merge(link.prior, baseline_diameter_mm or {}, categories or {})
            absorbed = tuple(p.tracking_uid for p in link.prior if p is not kept)
            identities[link.current[0].tracking_uid] = CarriedIdentity(kept.tracking_uid, kept.tracking_id,
                                                                       absorbed_uids=absorbed)
        else:
            for lesion in link.current:
                identities[lesion.tracking_uid] = CarriedIdentity(lesion.tracking_uid, lesion.tracking_id)
    return identities


def _split(fragments: Sequence[TimepointLesion], parent: TimepointLesion) -> dict[str, CarriedIdentity]:
    ranked = sorted(fragments, key=lambda lesion: (-lesion.volume_ml, lesion.tracking_uid))
    return {lesion.tracking_uid: CarriedIdentity(fragment_uid(parent.tracking_uid, rank),
                                                 f"{parent.tracking_id} fragment {rank}",
                                                 derived_from_uid=parent.tracking_uid)
            for rank, lesion in enumerate(ranked, start=1)}


_MERGE_PRECEDENCE = {BaselineCategory.TARGET.value: 0, BaselineCategory.NON_TARGET.value: 1}


def _kept_in_merge(merged: Sequence[TimepointLesion], baseline_diameter_mm: Mapping[str, float],
                   categories: Mapping[str, str]) -> TimepointLesion:
    def precedence(lesion: TimepointLesion) -> tuple[int, float, str]:
        return (_MERGE_PRECEDENCE.get(categories.get(lesion.tracking_uid, ""), 2),
                -baseline_diameter_mm.get(lesion.tracking_uid, lesion.diameter_mm), lesion.tracking_uid)
    return min(merged, key=precedence)
