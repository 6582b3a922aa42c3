"""A synthetic follow-up of a real CT + RTSTRUCT study, with a change known in advance.

The same CT (same Frame of Reference, same voxels) is re-issued under a new Study Instance UID
and a later Study Date, and every contour of the RTSTRUCT is scaled in-plane by `scale` about
the ROI's centroid (the mean of its contour points, one fixed axis for all slices): each
polygon's longest in-plane chord then changes by exactly `scale` and its area by scale**2.
The expected changes are measured on these polygons by the test itself (`longest_chord_mm`),
never taken from the service.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid


def _points(contour: pydicom.Dataset) -> np.ndarray:
    return np.asarray([float(v) for v in contour.ContourData]).reshape(-1, 3)


def write_follow_up(ct_dir: Path, rtstruct: Path, out: Path, *, scale: float, study_date: str,
                    study_uid: str | None = None) -> tuple[Path, Path]:
    """(CT directory, RTSTRUCT file) of the follow-up, written under `out`."""
    study_uid = study_uid or generate_uid()
    ct_out, rs_out = out / "ct", out / "rtstruct"
    ct_out.mkdir(parents=True)
    rs_out.mkdir(parents=True)
    for path in sorted(ct_dir.iterdir()):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.StudyDate = study_uid, study_date
        ds.save_as(ct_out / path.name)
    rs = pydicom.dcmread(rtstruct)
    rs.StudyInstanceUID, rs.StudyDate = study_uid, study_date
    rs.SOPInstanceUID = rs.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    rs.SeriesInstanceUID = generate_uid()
    for roi in rs.ROIContourSequence:
        centre = np.concatenate([_points(c) for c in roi.ContourSequence]).mean(axis=0)
        for contour in roi.ContourSequence:
            points = _points(contour)
            points[:, :2] = centre[:2] + scale * (points[:, :2] - centre[:2])
            contour.ContourData = [f"{v:.6f}" for v in points.ravel()]
    target = rs_out / "RS.dcm"
    rs.save_as(target)
    return ct_out, target


def longest_chord_mm(rtstruct: Path, roi_number: int = 1) -> float:
    """The longest in-plane chord over the ROI's polygons (the largest vertex-to-vertex distance
    in any one slice: a polygon's diameter is reached between two of its vertices)."""
    rs = pydicom.dcmread(rtstruct)
    roi = next(r for r in rs.ROIContourSequence if int(r.ReferencedROINumber) == roi_number)
    return max(float(np.linalg.norm(a[:2] - b[:2]))
               for contour in roi.ContourSequence
               for a, b in itertools.combinations(_points(contour), 2))


def diameter_percent_bounds(baseline_rs: Path, follow_up_rs: Path, ct_dir: Path) -> tuple[float, float]:
    """The range the measured LDPCTBL must lie in: the rasterised mask's longest diameter is between
    voxel centres inside the polygon, so it lies within one in-plane voxel diagonal e of the
    polygons' longest chord; the % change then lies between the bounds those chords give."""
    before, after = longest_chord_mm(baseline_rs), longest_chord_mm(follow_up_rs)
    ct = pydicom.dcmread(next(ct_dir.iterdir()), stop_before_pixels=True)
    e = math.hypot(*(float(v) for v in ct.PixelSpacing))
    return 100 * ((after - e) / (before + e) - 1), 100 * ((after + e) / (before - e) - 1)
