"""The result of matching: links between current and prior lesions (docs/method.md 5.1)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from service.longitudinal.timepoint import TimepointLesion


class LinkStatus(StrEnum):
    """What became of a lesion between the prior and the current study."""

    MATCHED = "matched"
    SPLIT = "split"  # one prior lesion -> several current fragments
    MERGED = "merged"  # several prior lesions -> one current lesion
    AMBIGUOUS = "ambiguous"  # a geometric pair with a near-equal rival: for review, not RECIST
    NEW = "new"  # a candidate: inside the prior scan's coverage, requires confirmation
    DISAPPEARED = "disappeared"  # inside the current scan's coverage, not contoured
    NOT_EVALUABLE = "not_evaluable"  # outside the other scan, or no way to tell (see `reason`)


class MatchMethod(StrEnum):
    """How the link was made, in the order the cascade tries (docs/method.md 5.1)."""

    TRACKING_UID = "tracking_uid"
    CONCEPTUAL_VOLUME_UID = "conceptual_volume_uid"
    NAME = "name"
    GEOMETRY = "geometry"
    NONE = "none"  # an unmatched lesion


class Confidence(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True)
class Link:
    """Current lesion(s) <-> prior lesion(s).

    One side is empty for a new, disappeared or not-evaluable lesion; a split has one prior and
    several current lesions, a merge the reverse. `distance_mm` is between centroids after
    mapping (for a split or merge: the group's volume-weighted centroid); None when no mapping
    is available or one side is empty. `rivals` are the tracking UIDs of the near-equal
    alternatives that made a link ambiguous.
    """

    status: LinkStatus
    method: MatchMethod
    confidence: Confidence | None
    current: tuple[TimepointLesion, ...]
    prior: tuple[TimepointLesion, ...]
    distance_mm: float | None = None
    registration: str | None = None
    reason: str | None = None
    rivals: tuple[str, ...] = ()
