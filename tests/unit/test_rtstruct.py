"""RTSTRUCT -> masks: real STS structure sets against planimetry, and synthetic ones built here.

Synthetic contours are placed with coordinates computed from the CT headers (lowest slice's
ImagePositionPatient, PixelSpacing, slice positions), not from the loader's ImageGeometry, and
their edges run half-way between voxel centres, so the expected voxel counts are exact whatever
the boundary convention.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from service.errors import ContourError, FrameOfReferenceMismatch
from service.imaging.contours import rtstruct_to_masks
from service.sop_classes import RT_STRUCTURE_SET as RTSTRUCT_STORAGE
from service.imaging.volume import read_ct_directory
from service.model import CtSeries
from tests.support.external import DATA_DIR, require_data
from tests.support.planimetry import contour_areas

STS = DATA_DIR / "ct-rtstruct"

pytestmark = pytest.mark.filterwarnings("ignore:The value length")  # STS StudyID is 17 chars


def _patient_dir(patient: str) -> Path:
    return require_data(STS / patient)


@pytest.fixture(scope="module")
def sts019() -> tuple[CtSeries, list[Dataset]]:
    folder = _patient_dir("STS_019") / "image"
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(folder.glob("*.dcm"))]
    return read_ct_directory(folder), sorted(headers, key=lambda ds: float(ds.ImagePositionPatient[2]))


# --- planimetry on the real structure sets ----------------------------------------------------


@pytest.mark.parametrize("patient", ["STS_019", "STS_025", "STS_002"])
def test_real_roi_matches_planimetry_slice_by_slice(patient: str) -> None:
    """Each CT slice's mask area equals its contours' area within the rasterisation bound.

    Slices are matched by position from the CT headers (the ContourImageSequence UIDs match no
    CT file), so this checks placement too: a slice without contours must be empty. The volume
    (sum over slices x slice spacing) then agrees within the summed bounds.
    """
    folder = _patient_dir(patient)
    ct = read_ct_directory(folder / "image")
    rtstruct = pydicom.dcmread(folder / "mask" / "RS.dcm")
    slice_z = sorted(
        round(float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]), 2)
        for f in (folder / "image").glob("*.dcm")
    )
    assert ct.geometry.direction == (1, 0, 0, 0, 1, 0, 0, 0, 1)  # planimetry below assumes axial
    pixel = ct.geometry.spacing[0]
    assert ct.geometry.spacing[1] == pixel
    (lesion,) = rtstruct_to_masks(rtstruct, ct)
    assert (lesion.number, lesion.name, lesion.source) == (1, "GTV_Mass_CT", "RTSTRUCT")
    assert lesion.source_sop_instance_uid == rtstruct.SOPInstanceUID
    assert lesion.source_sop_class_uid == RTSTRUCT_STORAGE
    assert lesion.warnings == []
    planimetry = contour_areas(rtstruct, pixel)
    counts = lesion.mask.sum(axis=(1, 2))
    measured = {slice_z[lesion.offset_zyx[0] + k]: int(n) * pixel**2 for k, n in enumerate(counts) if n}
    assert sorted(measured) == sorted(planimetry)
    for z, (area, bound) in planimetry.items():
        assert abs(measured[z] - area) <= bound, (z, measured[z], area, bound)
    volume = lesion.voxel_count * float(np.prod(ct.geometry.spacing))
    expected = sum(area for area, _ in planimetry.values()) * ct.geometry.spacing[2]
    assert abs(volume - expected) <= sum(b for _, b in planimetry.values()) * ct.geometry.spacing[2]


# --- synthetic structure sets on the STS_019 grid ---------------------------------------------


def _item(**attributes: object) -> Dataset:
    item = Dataset()
    for keyword, value in attributes.items():
        setattr(item, keyword, value)
    return item


def _square(
    low: float, high: float, low_y: float | None = None, high_y: float | None = None
) -> list[tuple[float, float]]:
    """Corners (column, row index units) of an axis-aligned rectangle, counter-clockwise."""
    low_y = low if low_y is None else low_y
    high_y = high if high_y is None else high_y
    return [(low, low_y), (high, low_y), (high, high_y), (low, high_y)]


def _to_patient(
    headers: list[Dataset], points: list[tuple[float, float]], slice_index: float
) -> list[float]:
    """(column, row) index points on a (possibly fractional) slice -> flat ContourData in mm."""
    first = headers[0]
    x0, y0, _ = (float(v) for v in first.ImagePositionPatient)
    row_spacing, column_spacing = (float(v) for v in first.PixelSpacing)
    z_first, z_second = (float(ds.ImagePositionPatient[2]) for ds in headers[:2])
    z = z_first + slice_index * (z_second - z_first)
    return [round(v, 4) for i, j in points for v in (x0 + i * column_spacing, y0 + j * row_spacing, z)]


def _rtstruct(
    headers: list[Dataset],
    contours: list[tuple[str, list[tuple[float, float]], float]],
    *,
    frame_of_reference: str | None = None,
    name: str = "lesion",
) -> Dataset:
    """An RTSTRUCT with one ROI (number 1) made of (type, index points, slice index) contours."""
    ds = Dataset()
    ds.SOPClassUID = RTSTRUCT_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "RTSTRUCT"
    ds.StructureSetROISequence = [
        _item(
            ROINumber=1,
            ReferencedFrameOfReferenceUID=frame_of_reference or headers[0].FrameOfReferenceUID,
            ROIName=name,
        )
    ]
    ds.ROIContourSequence = [
        _item(
            ReferencedROINumber=1,
            ContourSequence=[
                _item(
                    ContourGeometricType=kind,
                    NumberOfContourPoints=len(points),
                    ContourData=_to_patient(headers, points, slice_index),
                )
                for kind, points, slice_index in contours
            ],
        )
    ]
    return ds


@pytest.mark.parametrize("reverse_hole", [False, True])
def test_square_with_hole_gives_exact_count(sts019, reverse_hole: bool) -> None:
    ct, headers = sts019
    hole = _square(14.5, 19.5)
    if reverse_hole:  # RTSTRUCT writers do not agree on hole winding: it must not matter
        hole = hole[::-1]
    rtstruct = _rtstruct(headers, [("CLOSED_PLANAR", _square(9.5, 29.5), 5), ("CLOSED_PLANAR", hole, 5)])
    (lesion,) = rtstruct_to_masks(rtstruct, ct)
    assert lesion.voxel_count == 20 * 20 - 5 * 5
    assert lesion.offset_zyx == (5, 10, 10)
    assert lesion.mask.shape == (1, 20, 20)
    assert not lesion.mask[0, 5:10, 5:10].any()


def test_island_inside_hole_is_filled(sts019) -> None:
    ct, headers = sts019
    contours = [
        ("CLOSED_PLANAR", _square(9.5, 29.5), 5),
        ("CLOSED_PLANAR", _square(14.5, 24.5), 5),
        ("CLOSED_PLANAR", _square(17.5, 21.5), 5),
    ]
    (lesion,) = rtstruct_to_masks(_rtstruct(headers, contours), ct)
    assert lesion.voxel_count == 400 - 100 + 16


def test_disjoint_contours_on_one_slice_are_both_filled(sts019) -> None:
    ct, headers = sts019
    contours = [
        ("CLOSED_PLANAR", _square(2.5, 5.5), 7),
        ("CLOSED_PLANAR", _square(10.5, 14.5, 30.5, 34.5), 7),
    ]
    (lesion,) = rtstruct_to_masks(_rtstruct(headers, contours), ct)
    assert lesion.voxel_count == 9 + 16
    assert lesion.offset_zyx == (7, 3, 3)
    assert lesion.mask.shape == (1, 32, 12)


def test_contours_on_separate_slices_keep_their_slices(sts019) -> None:
    ct, headers = sts019
    contours = [("CLOSED_PLANAR", _square(2.5, 5.5), 3), ("CLOSED_PLANAR", _square(2.5, 4.5), 6)]
    (lesion,) = rtstruct_to_masks(_rtstruct(headers, contours), ct)
    assert lesion.offset_zyx == (3, 3, 3)
    assert lesion.mask.sum(axis=(1, 2)).tolist() == [9, 0, 0, 4]


def test_triangle_counts_centres_strictly_inside(sts019) -> None:
    """A slanted edge: centres (x, y) inside iff x, y > 10.25 and x + y < 30.9 (none on an edge).

    Rows y = 11..19 then hold 9, 8, ..., 1 centres.
    """
    ct, headers = sts019
    triangle = [(10.25, 10.25), (20.65, 10.25), (10.25, 20.65)]
    (lesion,) = rtstruct_to_masks(_rtstruct(headers, [("CLOSED_PLANAR", triangle, 2)]), ct)
    assert lesion.voxel_count == sum(range(1, 10))
    assert lesion.offset_zyx == (2, 11, 11)


def test_open_contours_and_points_are_ignored_with_a_warning(sts019) -> None:
    ct, headers = sts019
    contours = [
        ("CLOSED_PLANAR", _square(2.5, 5.5), 4),
        ("OPEN_PLANAR", [(0.0, 0.0), (40.0, 40.0), (0.0, 40.0)], 4),
        ("POINT", [(50.0, 50.0)], 4),
        ("POINT", [(51.0, 50.0)], 5),
    ]
    (lesion,) = rtstruct_to_masks(_rtstruct(headers, contours), ct)
    assert lesion.voxel_count == 9
    assert len(lesion.warnings) == 2
    assert "1 OPEN_PLANAR contour(s)" in lesion.warnings[0]
    assert "2 POINT contour(s)" in lesion.warnings[1]


def test_other_frame_of_reference_is_a_mismatch(sts019) -> None:
    ct, headers = sts019
    other = generate_uid()
    rtstruct = _rtstruct(headers, [("CLOSED_PLANAR", _square(2.5, 5.5), 4)], frame_of_reference=other)
    with pytest.raises(FrameOfReferenceMismatch) as error:
        rtstruct_to_masks(rtstruct, ct)
    message = str(error.value)  # by role: a UID can identify the study (test_messages_without_uids.py)
    assert message.startswith("ROI 1 of the RTSTRUCT is in another Frame of Reference than the CT series")
    assert other not in message and ct.frame_of_reference_uid not in message


@pytest.mark.parametrize(
    ("slice_index", "accepted"),
    [(4.2, True), (3.8, True), (4.4, False), (4.6, False)],
)
def test_contour_must_lie_on_a_slice_plane(sts019, slice_index: float, accepted: bool) -> None:
    """Within a quarter slice the contour snaps to the nearest slice (4); beyond, it is refused."""
    ct, headers = sts019
    rtstruct = _rtstruct(headers, [("CLOSED_PLANAR", _square(2.5, 5.5), slice_index)])
    if accepted:
        assert rtstruct_to_masks(rtstruct, ct)[0].offset_zyx[0] == 4
    else:
        with pytest.raises(ContourError, match="ROI 1 .* off the CT grid"):
            rtstruct_to_masks(rtstruct, ct)


@pytest.mark.parametrize(
    ("square", "slice_index"),
    [(_square(2.5, 5.5), 48), (_square(-3.5, 5.5), 4), (_square(130.5, 136.5), 4)],
)
def test_contour_outside_the_volume_is_refused(sts019, square, slice_index: int) -> None:
    """Beyond the last of 47 slices, or in-plane beyond column 0 / column 135."""
    ct, headers = sts019
    rtstruct = _rtstruct(headers, [("CLOSED_PLANAR", square, slice_index)])
    with pytest.raises(ContourError, match="outside the CT volume"):
        rtstruct_to_masks(rtstruct, ct)


def test_roi_without_area_is_skipped_and_logged_without_its_name(sts019, caplog) -> None:
    ct, headers = sts019
    rtstruct = _rtstruct(headers, [("CLOSED_PLANAR", _square(10.1, 10.4), 4)], name="Doe^John")
    with caplog.at_level(logging.WARNING):
        assert rtstruct_to_masks(rtstruct, ct) == []
    assert "ROI 1" in caplog.text and "Doe" not in caplog.text


def test_non_rtstruct_is_refused(sts019) -> None:
    ct, headers = sts019
    rtstruct = _rtstruct(headers, [("CLOSED_PLANAR", _square(2.5, 5.5), 4)])
    rtstruct.SOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
    with pytest.raises(ContourError, match="is not an RTSTRUCT"):
        rtstruct_to_masks(rtstruct, ct)


def test_only_lesion_roi_types_are_scored(sts019) -> None:
    """A planning structure set: the GTV is a lesion; the body outline and an organ are not."""
    from copy import deepcopy

    from service.imaging.contours import lesion_rois

    ct, headers = sts019
    rtstruct = _rtstruct(headers, [("CLOSED_PLANAR", _square(40.5, 50.5), 10)])
    for number in (2, 3):
        roi = deepcopy(rtstruct.StructureSetROISequence[0])
        roi.ROINumber = number
        rtstruct.StructureSetROISequence.append(roi)
        contour = deepcopy(rtstruct.ROIContourSequence[0])
        contour.ReferencedROINumber = number
        rtstruct.ROIContourSequence.append(contour)
    rtstruct.RTROIObservationsSequence = [
        _item(ObservationNumber=n, ReferencedROINumber=n, RTROIInterpretedType=t)
        for n, t in ((1, "GTV"), (2, "EXTERNAL"), (3, "ORGAN"))
    ]
    keep, skipped = lesion_rois(rtstruct)
    assert keep == {1}
    assert [note.split(":")[0] for note in skipped] == ["ROI 2 not scored", "ROI 3 not scored"]
    assert "EXTERNAL" in skipped[0] and "ORGAN" in skipped[1]
    assert [m.number for m in rtstruct_to_masks(rtstruct, ct, keep)] == [1]
    assert [m.number for m in rtstruct_to_masks(rtstruct, ct)] == [1, 2, 3]


# --- self-intersecting contours ---------------------------------------------------------------


def test_bow_tie_contour_is_scored_with_a_warning(sts019) -> None:
    """Its two triangles are filled (even-odd), but a drawn outline that crosses itself is
    rarely what was meant: the lesion carries a warning naming the contour, ROI and slice."""
    ct, headers = sts019
    bow_tie = [(9.5, 9.5), (29.5, 29.5), (29.5, 9.5), (9.5, 29.5)]
    (lesion,) = rtstruct_to_masks(_rtstruct(headers, [("CLOSED_PLANAR", _square(2.5, 5.5), 4), ("CLOSED_PLANAR", bow_tie, 5)]), ct)
    assert lesion.warnings == [
        f"contour 2 of ROI 1, on slice 6 of {ct.geometry.size[2]}, intersects itself; filled by the even-odd rule"
    ]


@pytest.mark.parametrize(
    "contours",
    [
        [("CLOSED_PLANAR", _square(9.5, 29.5), 5)],
        [("CLOSED_PLANAR", [(10.25, 10.25), (20.65, 10.25), (10.25, 20.65)], 5)],
        [("CLOSED_PLANAR", _square(9.5, 29.5), 5), ("CLOSED_PLANAR", _square(14.5, 19.5)[::-1], 5)],  # a hole
    ],
    ids=["square", "triangle", "square with a hole"],
)
def test_simple_polygons_and_holes_give_no_warning(sts019, contours) -> None:
    ct, headers = sts019
    (lesion,) = rtstruct_to_masks(_rtstruct(headers, contours), ct)
    assert lesion.warnings == []


def test_self_intersection_of_long_contours() -> None:
    """A 2000-point circle does not cross itself; a figure-eight of as many points does, and so
    does a circle with one point pulled out through the opposite side."""
    from service.imaging.contours import self_intersects

    t = np.linspace(0, 2 * np.pi, 2000, endpoint=False)
    circle = np.column_stack([np.cos(t), np.sin(t)]) * 50
    figure_eight = np.column_stack([np.sin(t), np.sin(t) * np.cos(t)]) * 50
    assert not self_intersects(circle)
    assert self_intersects(figure_eight)
    hooked = circle.copy()
    hooked[1000] = (60.0, 0.05)  # from (-50, 0): its two edges cross the circle near (50, 0)
    assert self_intersects(hooked)
