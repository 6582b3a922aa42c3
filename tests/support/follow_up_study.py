"""A synthetic follow-up of a real CT + RTSTRUCT study, with a change known in advance.

The follow-up itself is built by scripts/synthetic_follow_up.py (the quick start shows it too):
the same CT under a new study at a later date, every contour scaled in-plane by `scale` about
its ROI's centroid, so that each polygon's longest in-plane chord changes by exactly `scale`
and its area by scale**2. The expected changes are measured on these polygons by the test
itself (`longest_chord_mm`), never taken from the service.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pydicom

from scripts.synthetic_follow_up import write_follow_up

__all__ = ["longest_chord_mm", "write_follow_up"]


def longest_chord_mm(rtstruct: Path, roi_number: int = 1) -> float:
    """The longest in-plane chord over the ROI's polygons (the largest vertex-to-vertex distance
    in any one slice: a polygon's diameter is reached between two of its vertices)."""
    rs = pydicom.dcmread(rtstruct)
    roi = next(r for r in rs.ROIContourSequence if int(r.ReferencedROINumber) == roi_number)
    points = (np.asarray([float(v) for v in c.ContourData]).reshape(-1, 3) for c in roi.ContourSequence)
    return max(float(np.linalg.norm(a[:2] - b[:2])) for p in points for a, b in itertools.combinations(p, 2))


def diameter_percent_bounds(baseline_rs: Path, follow_up_rs: Path, ct_dir: Path) -> tuple[float, float]:
    """The range the measured LDPCTBL must lie in: the rasterised mask's longest diameter is between
    voxel centres inside the polygon, so it lies within one in-plane voxel diagonal e of the
    polygons' longest chord; the % change then lies between the bounds those chords give."""
    before, after = longest_chord_mm(baseline_rs), longest_chord_mm(follow_up_rs)
    ct = pydicom.dcmread(next(ct_dir.iterdir()), stop_before_pixels=True)
    e = math.hypot(*(float(v) for v in ct.PixelSpacing))
    return 100 * ((after - e) / (before + e) - 1), 100 * ((after + e) / (before - e) - 1)
