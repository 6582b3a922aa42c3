"""An RTSTRUCT ROI's area per contour plane, integrated from its polygons with plain code that
shares nothing with service.imaging.contours: the reference its masks are checked against (the
RTSTRUCT unit tests slice by slice, the end-to-end test through the SR's volume)."""

from __future__ import annotations

import numpy as np
from pydicom import Dataset


def _shoelace(polygon: np.ndarray) -> float:
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * abs(float(x @ np.roll(y, -1) - y @ np.roll(x, -1)))


def _perimeter(polygon: np.ndarray) -> float:
    return float(np.linalg.norm(polygon - np.roll(polygon, -1, axis=0), axis=1).sum())


def _contains(polygon: np.ndarray, point: np.ndarray) -> bool:
    """Ray casting for one point, written plainly (independent of the vectorised code)."""
    inside = False
    n = len(polygon)
    for a in range(n):
        (xa, ya), (xb, yb) = polygon[a], polygon[(a + 1) % n]
        if (ya > point[1]) != (yb > point[1]):
            if point[0] < xa + (point[1] - ya) * (xb - xa) / (yb - ya):
                inside = not inside
    return inside


def contour_areas(rtstruct: Dataset, pixel: float) -> dict[float, tuple[float, float]]:
    """Per contour plane z (mm): (area mm2, error bound mm2) of the first ROI, from its polygons.

    Each contour's area counts positive, or negative if it lies inside an odd number of other
    contours of its slice (a hole). Counting voxel centres instead of integrating area can only
    err in the band within half a pixel diagonal of the outline, on one side or the other, so
    the error of a slice is at most its perimeter x half the pixel diagonal.
    """
    planes: dict[float, list[np.ndarray]] = {}
    for contour in rtstruct.ROIContourSequence[0].ContourSequence:
        points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
        planes.setdefault(round(points[0, 2], 2), []).append(points[:, :2])
    result = {}
    for z, polygons in planes.items():
        area, bound = 0.0, 0.0
        for k, polygon in enumerate(polygons):
            depth = sum(_contains(other, polygon[0]) for j, other in enumerate(polygons) if j != k)
            area += (-1) ** depth * _shoelace(polygon)
            bound += _perimeter(polygon) * pixel * np.sqrt(2) / 2
        result[z] = (area, bound)
    return result
