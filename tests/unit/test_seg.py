"""SEG -> masks on the 3-slice ct-seg CT: real dcmqi SEGs and variants of them built here.

The expected masks are rebuilt in the test from the SEG frames (pydicom pixel_array) and the
CT slice positions read from the CT headers, independently of the reader under test.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from service.errors import ContourError, FrameOfReferenceMismatch
from service.imaging.contours import seg_to_masks
from service.sop_classes import SEGMENTATION as SEGMENTATION_STORAGE
from service.imaging.volume import load_ct_series, read_ct_directory
from service.model import CodedConcept, CtSeries, LesionMask
from tests.support.external import DATA_DIR, require_data

CT_SEG = DATA_DIR / "ct-seg"


@pytest.fixture(scope="module")
def ct() -> CtSeries:
    return read_ct_directory(require_data(CT_SEG / "ct"))


@pytest.fixture(scope="module")
def ct_headers() -> list[Dataset]:
    files = sorted(require_data(CT_SEG / "ct").glob("*.dcm"))
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    return sorted(headers, key=lambda ds: float(ds.ImagePositionPatient[2]))


@pytest.fixture(scope="module")
def seg_files() -> dict[str, Dataset]:
    names = ("liver", "partial_overlaps")
    return {name: pydicom.dcmread(require_data(CT_SEG / f"{name}.dcm")) for name in names}


@pytest.fixture
def liver(seg_files: dict[str, Dataset]) -> Dataset:
    """A private copy: tests modify it, never the file or the module fixture."""
    return copy.deepcopy(seg_files["liver"])


def _frame_position(seg: Dataset, frame: int) -> list[float]:
    item = seg.PerFrameFunctionalGroupsSequence[frame]
    return [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]


def _slice_at(slice_z: list[float], z: float) -> int:
    k = int(np.argmin(np.abs(np.asarray(slice_z) - z)))
    assert abs(slice_z[k] - z) < 1e-3
    return k


def _expected_volumes(seg: Dataset, ct_headers: list[Dataset]) -> dict[int, np.ndarray]:
    """Segment number -> full CT-sized boolean volume, from the frames and the CT headers."""
    slice_z = [float(ds.ImagePositionPatient[2]) for ds in ct_headers]
    frames = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    volumes: dict[int, np.ndarray] = {}
    for f, frame in enumerate(frames):
        x, y, z = _frame_position(seg, f)
        # These SEGs share the CT's in-plane grid (up to the SEG's rounding of positions to
        # 5 significant digits): frames paste at column/row 0 of the slice at their z.
        ct_xy = [float(v) for v in ct_headers[0].ImagePositionPatient[:2]]
        np.testing.assert_allclose((x, y), ct_xy, atol=1e-3)
        k = _slice_at(slice_z, z)
        item = seg.PerFrameFunctionalGroupsSequence[f]
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        shape = (len(ct_headers), seg.Rows, seg.Columns)
        volume = volumes.setdefault(number, np.zeros(shape, dtype=bool))
        volume[k] |= frame > 0
    return volumes


def _full(lesion: LesionMask, ct: CtSeries) -> np.ndarray:
    volume = np.zeros(ct.hu.shape, dtype=bool)
    z, y, x = lesion.offset_zyx
    dz, dy, dx = lesion.mask.shape
    volume[z : z + dz, y : y + dy, x : x + dx] = lesion.mask
    return volume


@pytest.mark.parametrize("name", ["liver", "partial_overlaps"])
def test_segments_match_their_frames(ct, ct_headers, seg_files, name: str) -> None:
    seg = seg_files[name]
    expected = _expected_volumes(seg, ct_headers)
    masks = seg_to_masks(seg, ct)
    labels = {int(item.SegmentNumber): str(item.SegmentLabel) for item in seg.SegmentSequence}
    assert [m.number for m in masks] == sorted(labels)
    for lesion in masks:
        assert lesion.name == labels[lesion.number]
        assert (lesion.source, lesion.source_sop_class_uid) == ("SEG", SEGMENTATION_STORAGE)
        assert lesion.source_sop_instance_uid == seg.SOPInstanceUID
        np.testing.assert_array_equal(_full(lesion, ct), expected[lesion.number])
        for axes in ((1, 2), (0, 2), (0, 1)):  # cropped: no empty first/last plane on any axis
            assert lesion.mask.any(axis=axes)[[0, -1]].all()


def test_liver_count_equals_the_frame_pixel_sum(ct, seg_files) -> None:
    (lesion,) = seg_to_masks(seg_files["liver"], ct)
    assert lesion.name == "Liver"
    assert lesion.voxel_count == int(seg_files["liver"].pixel_array.sum())
    assert lesion.anatomic_region is None  # this SEG has no AnatomicRegionSequence


def test_partial_overlaps_counts_per_segment(ct, seg_files) -> None:
    seg = seg_files["partial_overlaps"]
    frames = seg.pixel_array
    sums: dict[int, int] = {}
    for f, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        sums[number] = sums.get(number, 0) + int(frames[f].sum())
    masks = seg_to_masks(seg, ct)
    assert len(masks) == 5
    assert {m.number: m.voxel_count for m in masks} == sums


def test_anatomic_region_is_read(ct, liver: Dataset) -> None:
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = "10200004", "SCT", "Liver"
    liver.SegmentSequence[0].AnatomicRegionSequence = [region]
    (lesion,) = seg_to_masks(liver, ct)
    assert lesion.anatomic_region == CodedConcept(value="10200004", scheme="SCT", meaning="Liver")


def test_fractional_seg_is_thresholded_at_half(ct, ct_headers, liver: Dataset) -> None:
    """Liver at 200/254; outside it two 10x10 patches at 126/254 (< 0.5) and 127/254 (= 0.5)."""
    binary = liver.pixel_array.reshape(-1, liver.Rows, liver.Columns)
    assert not binary[0, :10, :30].any()
    fractional = (binary * 200).astype(np.uint8)
    fractional[0, :10, :10] = 126
    fractional[0, :10, 20:30] = 127
    liver.SegmentationType = "FRACTIONAL"
    liver.SegmentationFractionalType = "PROBABILITY"
    liver.MaximumFractionalValue = 254
    liver.BitsAllocated, liver.BitsStored, liver.HighBit = 8, 8, 7
    liver.PixelData = fractional.tobytes()
    (lesion,) = seg_to_masks(liver, ct)
    assert lesion.voxel_count == int(binary.sum()) + 100
    slice_z = [float(ds.ImagePositionPatient[2]) for ds in ct_headers]
    slice0 = _slice_at(slice_z, _frame_position(liver, 0)[2])
    full = _full(lesion, ct)
    assert full[slice0, :10, 20:30].all() and not full[slice0, :10, :10].any()


def test_other_frame_of_reference_is_a_mismatch(ct, liver: Dataset) -> None:
    liver.FrameOfReferenceUID = generate_uid()
    with pytest.raises(FrameOfReferenceMismatch) as error:
        seg_to_masks(liver, ct)
    message = str(error.value)
    assert liver.FrameOfReferenceUID in message and ct.frame_of_reference_uid in message


def _shift_frames(seg: Dataset, dx_mm: float = 0.0, dz_mm: float = 0.0) -> None:
    for item in seg.PerFrameFunctionalGroupsSequence:
        x, y, z = (float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient)
        position = [round(x + dx_mm, 6), y, round(z + dz_mm, 6)]
        item.PlanePositionSequence[0].ImagePositionPatient = position


def test_whole_pixel_offset_is_placed(ct, liver: Dataset) -> None:
    """A SEG grid shifted by exactly -2 columns still lies on the CT grid."""
    (reference,) = seg_to_masks(copy.deepcopy(liver), ct)
    _shift_frames(liver, dx_mm=-2 * ct.geometry.spacing[0])
    (lesion,) = seg_to_masks(liver, ct)
    z, y, x = reference.offset_zyx
    assert lesion.offset_zyx == (z, y, x - 2)
    np.testing.assert_array_equal(lesion.mask, reference.mask)


@pytest.mark.parametrize(
    ("dx_pixels", "dz_slices"),
    [(0.5, 0.0), (0.0, 0.4)],
)
def test_frames_off_the_ct_grid_are_refused(
    ct, liver: Dataset, dx_pixels: float, dz_slices: float
) -> None:
    """Half a pixel sideways or 0.4 of a slice (1 mm slices) is beyond the quarter-voxel rule."""
    dx_mm, dz_mm = dx_pixels * ct.geometry.spacing[0], dz_slices * ct.geometry.spacing[2]
    _shift_frames(liver, dx_mm=dx_mm, dz_mm=dz_mm)
    with pytest.raises(ContourError, match="off the CT grid"):
        seg_to_masks(liver, ct)


def test_segment_without_pixels_is_skipped_and_logged(ct, liver: Dataset, caplog) -> None:
    empty = copy.deepcopy(liver.SegmentSequence[0])
    empty.SegmentNumber, empty.SegmentLabel = 2, "Doe^John"
    liver.SegmentSequence.append(empty)
    with caplog.at_level(logging.WARNING):
        masks = seg_to_masks(liver, ct)
    assert [m.number for m in masks] == [1]
    assert "segment 2" in caplog.text and "Doe" not in caplog.text


def _set_seg_pixel_spacing(seg: Dataset, spacing: list[float]) -> None:
    seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing = spacing


def test_seg_on_a_coarser_grid_is_refused(ct, liver: Dataset) -> None:
    """Policy: a SEG on another pixel grid is not resampled (it would move the boundary)."""
    _set_seg_pixel_spacing(liver, [2 * ct.geometry.spacing[1], 2 * ct.geometry.spacing[0]])
    with pytest.raises(ContourError, match="off the CT grid"):
        seg_to_masks(liver, ct)


def test_non_square_pixels_are_placed(ct_headers, liver: Dataset) -> None:
    """CT and SEG both with 0.5 mm between rows and 0.9 mm between columns: still one grid."""
    files = [pydicom.dcmread(f) for f in sorted(require_data(CT_SEG / "ct").glob("*.dcm"))]
    for ds in files:
        ds.PixelSpacing = [0.5, 0.9]
    ct = load_ct_series(files)
    _set_seg_pixel_spacing(liver, [0.5, 0.9])
    (lesion,) = seg_to_masks(liver, ct)
    np.testing.assert_array_equal(_full(lesion, ct), _expected_volumes(liver, ct_headers)[1])
