"""When is a study complete? DICOM has no "end of study" message, so we decide.

A study is ready when (in this order):
1. early: contours (RTSTRUCT or SEG) are present and CT slices cover every contour plane, with
   no gap between them and an EarlyMargin beyond each end (what the scoring reads beyond a
   contour: the ring, one resampled voxel, the interpolator's support), so we need not sit out
   the quiet period when the sender is done;
2. quiet: nothing new has arrived for `quiet_seconds` and contours are present;
3. hard cap: `hard_cap_seconds` after the study started waiting, whatever is there: ready if
   contours are present, else failed ("no contours received"). The cap bounds waiting for a
   sender that trickles instances forever, or a structure set that never comes.
A CT alone keeps waiting past the quiet period: the RTSTRUCT may be drawn and sent later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from service.ingest.index import InstanceRecord, StudyState
from service.sop_classes import CONTOUR_SOP_CLASSES, CT_SOP_CLASSES



@dataclass(frozen=True)
class EarlyMargin:
    """How much CT the scoring reads beyond a contour's last plane, so how much must have arrived
    before a study is complete by geometry.

    Beyond the mask, the scoring reads the peritumoral ring (`ring_mm`), then the resampled grid
    may start up to one new voxel further out (`resampled_voxel_mm`), and interpolating a
    resampled voxel reads the original slices around it (`support_slices`: one for linear or
    nearest-neighbour, more for the B-spline, whose pre-filter reaches further). The last term
    is in slices of the series at hand, so a thick series needs more millimetres than a thin
    one. A flat 10 mm made a lesion a few millimetres from the end of a thin scan wait the whole
    quiet period; whatever is asked for here, the quiet period still decides for a lesion closer
    to the end of the scan than this margin.
    """

    ring_mm: float = 2.0
    resampled_voxel_mm: float = 1.0
    support_slices: int = 1

    def mm(self, slice_spacing_mm: float) -> float:
        """The margin for a series whose slices are `slice_spacing_mm` apart."""
        return self.ring_mm + self.resampled_voxel_mm + self.support_slices * slice_spacing_mm



class Outcome(StrEnum):
    """What to do with a receiving study now."""

    WAIT = "wait"  # keep receiving
    READY = "ready"  # score it
    FAILED = "failed"  # give up: it cannot become complete


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str  # why, for the log and the study's error

    @property
    def ready(self) -> bool:
        return self.outcome is Outcome.READY

    @property
    def failed(self) -> bool:
        return self.outcome is Outcome.FAILED


WAIT = Decision(Outcome.WAIT, "waiting for more instances")


def _series_covers(slices: np.ndarray, planes: Sequence[float], margin: EarlyMargin) -> bool:
    """Do these slice positions span every contour plane plus the margin, gap-free?"""
    if slices.size < 2 or not planes:
        return False
    steps = np.diff(slices)
    spacing = float(np.median(steps))
    if steps.max() > 1.5 * spacing:
        return False
    margin_mm = margin.mm(spacing)
    low, high = min(planes) - margin_mm, max(planes) + margin_mm
    return slices[0] <= low + 0.25 * spacing and slices[-1] >= high - 0.25 * spacing


def _covered(contours: Sequence[InstanceRecord], ct: Sequence[InstanceRecord], margin: EarlyMargin) -> bool:
    """Does every CT series of each contour object's frame of reference cover it?

    Series are judged one by one, and all must cover: a complete 5 mm reconstruction must not
    hide that the thin series the contours were drawn on is still arriving (then the quiet
    period decides).
    """
    series: dict[tuple[str, str], list[float]] = {}
    for record in ct:
        series.setdefault((record.frame_of_reference_uid, record.series_instance_uid), []).extend(record.positions)
    for contour in contours:
        in_frame = [np.unique(p) for (frame, _), p in series.items() if frame == contour.frame_of_reference_uid]
        if not in_frame or not all(_series_covers(s, contour.positions, margin) for s in in_frame):
            return False
    return True


def assess(
    study: StudyState, instances: Sequence[InstanceRecord], now: float, quiet_seconds: float,
    hard_cap_seconds: float, margin: EarlyMargin = EarlyMargin(),
) -> Decision:
    """Whether a receiving study is ready, must keep waiting, or has failed to become complete."""
    contours = [i for i in instances if i.sop_class_uid in CONTOUR_SOP_CLASSES]
    ct = [i for i in instances if i.sop_class_uid in CT_SOP_CLASSES]
    if contours and ct and _covered(contours, ct, margin):
        return Decision(Outcome.READY, "contours and the CT slices they span are present")
    if contours and now - study.last_received_at >= quiet_seconds:
        return Decision(Outcome.READY, f"no new instance for {quiet_seconds:g} s")
    if now - study.waiting_since >= hard_cap_seconds:
        if contours:
            return Decision(Outcome.READY, f"hard cap of {hard_cap_seconds:g} s reached")
        return Decision(Outcome.FAILED, f"no RTSTRUCT or SEG received within {hard_cap_seconds:g} s")
    return WAIT
