"""Key images on the real STS_019 CT and structure set, checked against the RTSTRUCT's polygons.

The references are computed here from the DICOM headers and the contour points with plain
code (tests/support/planimetry.py for areas, a point-to-segment distance below), never from the
rasteriser or the ring module: the key slice is the contour plane of largest polygon area; the
contour colour lies on the polygon (within a pixel); the ring's colour lies within the ring
width (plus half a pixel diagonal) of the polygon, inside or outside; the windowing follows the
window's definition.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
import pytest

from service.imaging.contours import rtstruct_to_masks
from service.imaging.volume import read_ct_directory
from service.model import CtSeries, ImageGeometry, LesionMask, LesionSource, LocationClass
from service.outputs.key_images import (CONTOUR_RGB, LUNG_WINDOW, SOFT_TISSUE_WINDOW, KeyImage, Window, key_image,
                                        overlay_rgb, window_for)
from tests.support.external import DATA_DIR, require_data
from tests.support.planimetry import contour_areas

pytestmark = pytest.mark.filterwarnings("ignore:The value length")  # STS StudyID is 17 chars
RING_MM = 2.0


@pytest.fixture(scope="module")
def study() -> tuple[KeyImage, pydicom.Dataset, list[pydicom.Dataset]]:
    folder = require_data(DATA_DIR / "ct-rtstruct" / "STS_019")
    ct = read_ct_directory(folder / "image")
    rtstruct = pydicom.dcmread(folder / "mask" / "RS.dcm")
    [mask] = rtstruct_to_masks(rtstruct, ct)
    headers = sorted((pydicom.dcmread(f, stop_before_pixels=True) for f in (folder / "image").glob("*.dcm")),
                     key=lambda ds: float(ds.ImagePositionPatient[2]))
    return key_image(ct, mask, RING_MM), rtstruct, headers


def _polygons_at(rtstruct: pydicom.Dataset, z: float) -> list[np.ndarray]:
    polygons = []
    for contour in rtstruct.ROIContourSequence[0].ContourSequence:
        points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
        if abs(points[0, 2] - z) < 0.01:
            polygons.append(points[:, :2])
    return polygons


def _distance_to_outline(points: np.ndarray, polygons: list[np.ndarray]) -> np.ndarray:
    """Distance (mm) from each point (..., 2) to the nearest edge of any polygon."""
    a = np.concatenate(polygons)
    b = np.concatenate([np.roll(polygon, -1, axis=0) for polygon in polygons])
    p = np.asarray(points, dtype=float)[..., np.newaxis, :]
    t = np.clip(((p - a) * (b - a)).sum(-1) / np.maximum(((b - a) ** 2).sum(-1), 1e-12), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[..., np.newaxis] * (b - a)), axis=-1).min(axis=-1)


def _pixel_centres_mm(image: KeyImage, header: pydicom.Dataset) -> np.ndarray:
    """(rows, columns, 2) patient x, y of the field of view's pixel centres, from the CT header
    (axial slices: ImageOrientationPatient is the identity here)."""
    x0, y0 = float(header.ImagePositionPatient[0]), float(header.ImagePositionPatient[1])
    row_mm, column_mm = (float(v) for v in header.PixelSpacing)
    rows, columns = np.indices(image.hu.shape)
    first_row, first_column = image.first_row_column
    return np.stack([x0 + (columns + first_column) * column_mm, y0 + (rows + first_row) * row_mm], axis=-1)


def test_the_key_slice_is_the_plane_of_largest_contour_area(study) -> None:
    image, rtstruct, headers = study
    areas = contour_areas(rtstruct, float(headers[0].PixelSpacing[0]))
    largest_z = max(areas, key=lambda z: areas[z][0])
    assert float(headers[image.slice_index].ImagePositionPatient[2]) == pytest.approx(largest_z, abs=0.01)
    assert image.slice_z_mm == pytest.approx(largest_z, abs=0.01)


def test_the_contour_colour_lies_on_the_polygon_and_only_there(study) -> None:
    image, rtstruct, headers = study
    header = headers[image.slice_index]
    polygons = _polygons_at(rtstruct, float(header.ImagePositionPatient[2]))
    rgb = overlay_rgb(image, SOFT_TISSUE_WINDOW)
    contour = (rgb == CONTOUR_RGB).all(axis=-1)
    centres = _pixel_centres_mm(image, header)
    pixel = float(header.PixelSpacing[0])
    distances = _distance_to_outline(centres[contour], polygons)
    assert len(distances) > 20 and distances.max() <= pixel * math.sqrt(2)
    for polygon in polygons:  # every vertex has a contour pixel within one pixel diagonal
        for vertex in polygon:
            assert np.min(np.linalg.norm(centres[contour] - vertex, axis=1)) <= pixel * math.sqrt(2)


def _inside(point: np.ndarray, polygons: list[np.ndarray]) -> bool:
    """Even-odd rule over all polygons of a plane (holes are polygons inside polygons)."""
    inside = False
    for polygon in polygons:
        for (xa, ya), (xb, yb) in zip(polygon, np.roll(polygon, -1, axis=0)):
            if (ya > point[1]) != (yb > point[1]) and point[0] < xa + (point[1] - ya) * (xb - xa) / (yb - ya):
                inside = not inside
    return inside


def test_the_ring_colour_lies_within_the_ring_width_of_the_contoured_volume(study) -> None:
    """The ring is 3D (method.md section 2): a pixel of the key slice is in it when it is within
    the width of this plane's outline, or of the faces between this plane and a neighbour,
    half a slice away. Every ring-coloured pixel must satisfy one of these (with half a pixel
    diagonal for voxelisation), and every pixel outside the lesion within the width minus
    that tolerance of this plane's outline must be ring-coloured."""
    image, rtstruct, headers = study
    header = headers[image.slice_index]
    planes = [_polygons_at(rtstruct, float(headers[k].ImagePositionPatient[2]))
              for k in (image.slice_index - 1, image.slice_index, image.slice_index + 1)]
    half_slice = abs(float(headers[1].ImagePositionPatient[2]) - float(headers[0].ImagePositionPatient[2])) / 2
    rgb = overlay_rgb(image, SOFT_TISSUE_WINDOW).astype(int)
    contour = (rgb == CONTOUR_RGB).all(axis=-1)
    tinted = (rgb[..., 0] - rgb[..., 1] > 40) & (rgb[..., 2] - rgb[..., 1] > 40) & ~contour
    centres = _pixel_centres_mm(image, header)
    tolerance = float(header.PixelSpacing[0]) * math.sqrt(2) / 2

    def near_a_face(point: np.ndarray) -> bool:
        for neighbour in (planes[0], planes[2]):
            if not neighbour:
                continue
            if _inside(point, neighbour) != _inside(point, planes[1]):
                return True  # a face lies right above or below: half a slice away
            in_plane = max(0.0, float(_distance_to_outline(point, neighbour)) - tolerance)
            if math.hypot(half_slice, in_plane) <= RING_MM:
                return True
        return False

    assert half_slice < RING_MM  # else the faces could not reach this plane's pixels at all
    assert tinted.sum() > 20
    distance = _distance_to_outline(centres, planes[1])
    for r, c in zip(*np.nonzero(tinted & (distance > RING_MM + tolerance))):
        assert near_a_face(centres[r, c]), (r, c)
    assert tinted[~image.lesion & (distance <= RING_MM - tolerance)].all()


def test_the_field_of_view_holds_the_ct_pixels_of_the_slice(study) -> None:
    image, _, headers = study
    header = pydicom.dcmread(Path(headers[image.slice_index].filename))
    hu = header.pixel_array * float(header.RescaleSlope) + float(header.RescaleIntercept)
    r, c = image.first_row_column
    rows, columns = image.hu.shape
    np.testing.assert_allclose(image.hu, hu[r:r + rows, c:c + columns])


def test_windowing_maps_the_window_to_the_grey_range() -> None:
    window = Window(40.0, 400.0)
    hu = np.asarray([[-160.0, 40.0, 240.0, -1000.0, 3000.0]], dtype=np.float32)
    image = KeyImage(1, "1.2.3", 0, 0.0, (0, 0), (1.0, 1.0), hu, np.zeros(hu.shape, bool), np.zeros(hu.shape, bool))
    grey = overlay_rgb(image, window)[0, :, 0]
    assert list(grey) == [0, 128, 255, 0, 255]  # (HU - (L - W/2)) / W x 255, clipped; 127.5 rounds to even


def test_lung_lesions_get_the_lung_window() -> None:
    assert window_for(LocationClass.LUNG) == LUNG_WINDOW
    assert {window_for(c) for c in LocationClass if c != LocationClass.LUNG} == {SOFT_TISSUE_WINDOW}


def test_a_lesion_at_the_edge_of_the_volume_gets_a_clipped_field_and_ring() -> None:
    """A lesion touching the first slice and the image's corner: the field of view and the ring
    stop at the volume's edges (nothing wraps round, nothing fails)."""
    geometry = ImageGeometry(size=(20, 20, 3), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))
    hu = np.full((3, 20, 20), 40.0, dtype=np.float32)
    ct = CtSeries(hu, geometry, "1.2", "1.3", "1.4", "1.2.840.10008.5.1.4.1.1.2", ("1.5", "1.6", "1.7"), 120.0)
    mask = np.zeros((2, 4, 4), dtype=bool)
    mask[0, :3, :3] = True  # slice 0: 9 voxels from the corner; slice 1: 1 voxel
    mask[1, 0, 0] = True
    lesion = LesionMask(7, "GTV", LesionSource.RTSTRUCT, "1.2.840.10008.5.1.4.1.1.481.3", "1.8", (0, 0, 0), mask)
    image = key_image(ct, lesion, 2.0)
    assert (image.slice_index, image.first_row_column) == (0, (0, 0))
    assert image.hu.shape == (3 + 17, 3 + 17)  # the lesion plus 2 + 15 mm, up to the volume's edge
    np.testing.assert_array_equal(image.lesion[:3, :3], np.ones((3, 3), bool))
    assert image.lesion.sum() == 9
    # ring: within 2 mm of the boundary (the boundary is half a voxel outside the outer voxel centres)
    assert image.ring[0, 4] and not image.ring[0, 5] and image.ring[4, 0] and not image.ring[5, 0]
