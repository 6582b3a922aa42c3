"""A synthetic follow-up of a real CT + RTSTRUCT study, with a change known in advance.

The follow-up itself is built by scripts/synthetic_follow_up.py (the quick start shows it too):
the same CT under a new study at a later date, every contour scaled in-plane by `scale` about
its ROI's centroid, so that each polygon's longest in-plane chord changes by exactly `scale`
and its area by scale**2. The expected changes are measured on these polygons by the test
itself (`longest_chord_mm`), never taken from the service.
"""

from __future__ import annotations

import itertools
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
