"""A synthetic follow-up of a real CT + RTSTRUCT study, with a change known in advance.

The follow-up itself is built by scripts/synthetic_follow_up.py (the quick start shows it too):
the same CT under a new study at a later date, every contour scaled in-plane by `scale` about
its ROI's centroid, so that each polygon's longest in-plane chord changes by exactly `scale`
and its area by scale**2. The expected changes are measured on these polygons by the test
itself (`longest_chord_mm`), never taken from the service.
"""

from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from scripts.synthetic_follow_up import write_follow_up

__all__ = ["diameter_percent_bounds", "longest_chord_mm", "percent_bounds", "pixel_diagonal_mm", "write_follow_up",
           "write_split"]


def _points(contour: pydicom.Dataset) -> np.ndarray:
    return np.asarray([float(v) for v in contour.ContourData]).reshape(-1, 3)


def longest_chord_mm(rtstruct: Path, roi_number: int = 1) -> float:
    """The longest in-plane chord over the ROI's polygons (the largest vertex-to-vertex distance
    in any one slice: a polygon's diameter is reached between two of its vertices)."""
    rs = pydicom.dcmread(rtstruct)
    roi = next(r for r in rs.ROIContourSequence if int(r.ReferencedROINumber) == roi_number)
    return max(float(np.linalg.norm(a[:2] - b[:2]))
               for contour in roi.ContourSequence
               for a, b in itertools.combinations(_points(contour), 2))


def pixel_diagonal_mm(ct_dir: Path) -> float:
    """One in-plane voxel diagonal of the CT: how far a rasterised mask's longest diameter (between
    voxel centres inside the polygon) can lie from the polygon's longest chord."""
    ct = pydicom.dcmread(next(ct_dir.iterdir()), stop_before_pixels=True)
    return math.hypot(*(float(v) for v in ct.PixelSpacing))


def percent_bounds(after: float, before: float, e_after: float, e_before: float) -> tuple[float, float]:
    """The % change that measurements within +-e of each chord (or chord sum) can give."""
    return 100 * ((after - e_after) / (before + e_before) - 1), 100 * ((after + e_after) / (before - e_before) - 1)


def diameter_percent_bounds(baseline_rs: Path, follow_up_rs: Path, ct_dir: Path) -> tuple[float, float]:
    """The range the measured LDPCTBL of ROI 1 must lie in, from the two polygons' longest chords."""
    e = pixel_diagonal_mm(ct_dir)
    return percent_bounds(longest_chord_mm(follow_up_rs), longest_chord_mm(baseline_rs), e, e)


def _clip(points: np.ndarray, x: float, keep_left: bool) -> np.ndarray:
    """The polygon cut by the plane X = x (Sutherland-Hodgman against one half-plane)."""
    inside = (lambda p: p[0] <= x) if keep_left else (lambda p: p[0] >= x)
    clipped = []
    for a, b in zip(points, np.roll(points, -1, axis=0)):
        if inside(a):
            clipped.append(a)
        if inside(a) != inside(b):
            t = (x - a[0]) / (b[0] - a[0])
            clipped.append(a + t * (b - a))
    return np.asarray(clipped)


def write_split(rtstruct: Path, target: Path) -> Path:
    """The RTSTRUCT with ROI 1 cut by the plane X = (its points' mean x) into two ROIs, "<name> left"
    (number 1) and "<name> right" (a new number): a split lesion whose fragments' volumes add up
    to the original's. Same study; a new SOP Instance UID."""
    rs = pydicom.dcmread(rtstruct)
    rs.SOPInstanceUID = rs.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    rs.SeriesInstanceUID = generate_uid()
    roi = next(r for r in rs.ROIContourSequence if int(r.ReferencedROINumber) == 1)
    cut = float(np.concatenate([_points(c) for c in roi.ContourSequence])[:, 0].mean())
    number = max(int(r.ROINumber) for r in rs.StructureSetROISequence) + 1
    right = copy.deepcopy(roi)
    right.ReferencedROINumber = number
    for half, keep_left in ((roi, True), (right, False)):
        kept = []
        for contour in half.ContourSequence:
            points = _clip(_points(contour), cut, keep_left)
            if len(points) >= 3:
                contour.ContourData = [f"{v:.6f}" for v in points.ravel()]
                contour.NumberOfContourPoints = len(points)
                kept.append(contour)
        half.ContourSequence = kept
    rs.ROIContourSequence.append(right)
    structure = next(r for r in rs.StructureSetROISequence if int(r.ROINumber) == 1)
    twin = copy.deepcopy(structure)
    twin.ROINumber, twin.ROIName = number, f"{structure.ROIName} right"
    structure.ROIName = f"{structure.ROIName} left"
    rs.StructureSetROISequence.append(twin)
    observation = copy.deepcopy(next(o for o in rs.RTROIObservationsSequence if int(o.ReferencedROINumber) == 1))
    observation.ObservationNumber = observation.ReferencedROINumber = number
    rs.RTROIObservationsSequence.append(observation)
    target.parent.mkdir(parents=True, exist_ok=True)
    rs.save_as(target)
    return target
