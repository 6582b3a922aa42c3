"""SEG -> masks on the 3-slice ct-seg CT: real dcmqi SEGs, variants of them built here, and a
LABELMAP SEG written by highdicom.

The expected masks are rebuilt in the test from the SEG frames (pydicom pixel_array) and either
the CT slice positions read from the CT headers or the CT instances each frame references,
independently of the reader under test (which reads the SEG through highdicom).
"""

from __future__ import annotations

import copy
import logging
from collections import Counter
from io import BytesIO

import highdicom as hd
import highdicom.image
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from service.errors import ContourError, FrameOfReferenceMismatch, InputError
from service.imaging.contours import seg_to_masks
from service.imaging.selection import StudyInputs, lesion_masks, study_info
from service.sop_classes import LABEL_MAP_SEGMENTATION, SEGMENTATION as SEGMENTATION_STORAGE
from service.imaging.volume import load_ct_series, read_ct_directory
from service.model import CodedConcept, CtSeries
from tests.support.crops import whole_mask
from tests.support.external import DATA_DIR, require_data
from tests.support.highdicom_seg import highdicom_seg

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
        np.testing.assert_array_equal(whole_mask(lesion, ct), expected[lesion.number])
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
    full = whole_mask(lesion, ct)
    assert full[slice0, :10, 20:30].all() and not full[slice0, :10, :10].any()


def test_other_frame_of_reference_is_a_mismatch(ct, liver: Dataset) -> None:
    liver.FrameOfReferenceUID = generate_uid()
    with pytest.raises(FrameOfReferenceMismatch) as error:
        seg_to_masks(liver, ct)
    message = str(error.value)  # by role: a UID can identify the study (test_messages_without_uids.py)
    assert message.startswith("the SEG is in another Frame of Reference than the CT series")
    assert liver.FrameOfReferenceUID not in message and ct.frame_of_reference_uid not in message


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
    np.testing.assert_array_equal(whole_mask(lesion, ct), _expected_volumes(liver, ct_headers)[1])


# --- independent placements, and the segmentation types highdicom reads --------------------------


def _volumes_by_referenced_instance(seg: Dataset, ct_headers: list[Dataset]) -> dict[int, np.ndarray]:
    """Segment number -> full CT-sized volume, each frame put on the CT slice its
    DerivationImageSequence names (ReferencedSOPInstanceUID): a placement that uses no
    coordinate at all, where the reader uses only coordinates."""
    slice_of = {str(ds.SOPInstanceUID): k for k, ds in enumerate(ct_headers)}
    frames = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    volumes: dict[int, np.ndarray] = {}
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence):
        (source,) = item.DerivationImageSequence[0].SourceImageSequence
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        shape = (len(ct_headers), seg.Rows, seg.Columns)
        volumes.setdefault(number, np.zeros(shape, dtype=bool))[slice_of[str(source.ReferencedSOPInstanceUID)]] |= frame > 0
    return volumes


@pytest.mark.parametrize("name", ["liver", "partial_overlaps"])
def test_every_segment_matches_the_frames_referenced_ct_instances(ct, ct_headers, seg_files, name: str) -> None:
    seg = seg_files[name]
    expected = _volumes_by_referenced_instance(seg, ct_headers)
    masks = {lesion.number: whole_mask(lesion, ct) for lesion in seg_to_masks(seg, ct)}
    assert sorted(masks) == sorted(expected) == [int(item.SegmentNumber) for item in seg.SegmentSequence]
    for number, volume in expected.items():
        np.testing.assert_array_equal(masks[number], volume)


def test_frames_on_every_other_slice_are_placed_on_theirs(ct, ct_headers, liver: Dataset) -> None:
    """Without the middle frame, highdicom stacks the SEG at twice the CT's slice spacing: its
    two slices still land on CT slices 0 and 2, and nothing on slice 1."""
    positions = [_frame_position(liver, f)[2] for f in range(3)]
    middle = int(np.argsort(positions)[1])
    expected = _expected_volumes(liver, ct_headers)[1]
    expected[_slice_at([float(ds.ImagePositionPatient[2]) for ds in ct_headers], positions[middle])] = False
    keep = [f for f in range(3) if f != middle]
    frames = liver.pixel_array.reshape(-1, liver.Rows, liver.Columns)[keep]
    liver.PerFrameFunctionalGroupsSequence = [liver.PerFrameFunctionalGroupsSequence[f] for f in keep]
    liver.NumberOfFrames = 2
    liver.PixelData = np.packbits(frames.ravel(), bitorder="little").tobytes()
    (lesion,) = seg_to_masks(liver, ct)
    np.testing.assert_array_equal(whole_mask(lesion, ct), expected)


@pytest.fixture(scope="module")
def ct_slices() -> list[Dataset]:
    files = [pydicom.dcmread(f) for f in require_data(CT_SEG / "ct").glob("*.dcm")]
    return sorted(files, key=lambda ds: float(ds.ImagePositionPatient[2]))


def test_labelmap_seg_gives_the_binary_segs_masks(ct, ct_headers, ct_slices, seg_files) -> None:
    """partial_overlaps' 5 segments as a LABELMAP written by highdicom: a label map holds one
    segment per voxel, so the voxels of two or more segments are left out (background) there;
    each segment read back is then its BINARY frames' volume minus those voxels."""
    binary = _expected_volumes(seg_files["partial_overlaps"], ct_headers)
    overlap = np.sum(list(binary.values()), axis=0) > 1
    assert overlap.any() and not all(np.array_equal(v, v & ~overlap) for v in binary.values())
    labels = np.zeros(ct.hu.shape, dtype=np.uint8)
    for number, volume in binary.items():
        labels[volume & ~overlap] = number
    seg = highdicom_seg(ct_slices, labels, {number: f"segment {number}" for number in binary})
    assert (seg.SOPClassUID, seg.SegmentationType) == (LABEL_MAP_SEGMENTATION, "LABELMAP")
    masks = seg_to_masks(pydicom.dcmread(_written(seg)), ct)
    assert [m.number for m in masks] == sorted(binary)
    for lesion in masks:
        assert (lesion.name, lesion.source_sop_class_uid) == (f"segment {lesion.number}", LABEL_MAP_SEGMENTATION)
        np.testing.assert_array_equal(whole_mask(lesion, ct), binary[lesion.number] & ~overlap)


def test_labelmap_background_is_not_counted_as_a_lesion(ct, ct_slices) -> None:
    """max_lesions_per_study counts lesions: a LABELMAP of 2 labels passes a limit of 2 although
    its SegmentSequence also describes the background segment highdicom writes, and fails at 1."""
    labels = np.zeros(ct.hu.shape, dtype=np.uint8)
    labels[1, 10:20, 10:20], labels[1, 30:40, 30:40] = 1, 2
    seg = pydicom.dcmread(_written(highdicom_seg(ct_slices, labels, {1: "one", 2: "two"})))
    assert len(seg.SegmentSequence) == 3  # background, one, two
    inputs = StudyInputs(ct=ct, contours=seg, evidence=[], study=study_info(ct_slices[0]))
    masks, _ = lesion_masks(inputs, frozenset(), max_lesions=2)
    assert [m.number for m in masks] == [1, 2]
    with pytest.raises(InputError, match="2 segments, more than max_lesions_per_study"):
        lesion_masks(inputs, frozenset(), max_lesions=1)


def test_a_labelmap_value_that_names_no_segment_is_an_error(ct, ct_slices) -> None:
    """A region labelled 2 whose SegmentSequence item is gone: failing the study names the value,
    where reading only the described segments would drop that region (a lesion) without a word."""
    labels = np.zeros(ct.hu.shape, dtype=np.uint8)
    labels[1, 10:20, 10:20], labels[1, 30:40, 30:40] = 1, 2
    seg = pydicom.dcmread(_written(highdicom_seg(ct_slices, labels, {1: "one", 2: "two"})))
    seg.SegmentSequence = [item for item in seg.SegmentSequence if item.SegmentNumber != 2]
    with pytest.raises(ContourError, match=r"pixel value\(s\) 2 name no segment of its SegmentSequence"):
        seg_to_masks(seg, ct)


def test_a_labelmap_of_its_background_alone_gives_no_masks(ct, ct_slices) -> None:
    """Only the background described (PixelPaddingValue 1, the one label used): no lesion, no error."""
    labels = np.zeros(ct.hu.shape, dtype=np.uint8)
    labels[1, 10:20, 10:20] = 1
    seg = pydicom.dcmread(_written(highdicom_seg(ct_slices, labels, {1: "one"})))
    seg.PixelPaddingValue = 1
    seg.SegmentSequence = [item for item in seg.SegmentSequence if item.SegmentNumber == 1]
    assert seg_to_masks(seg, ct) == []


def _count_decoded_frames(monkeypatch) -> Counter[int]:
    """Frame index -> times highdicom decoded it: a spy around its real decoder (highdicom.image
    looks decode_frame up at each call), so the frames are still decoded as they would be."""
    decoded: Counter[int] = Counter()
    real_decode_frame = highdicom.image.decode_frame

    def counting_decode_frame(*args, **kwargs):
        decoded[kwargs["index"]] += 1
        return real_decode_frame(*args, **kwargs)

    monkeypatch.setattr(highdicom.image, "decode_frame", counting_decode_frame)
    return decoded


def test_a_labelmap_seg_decodes_each_frame_once_for_all_its_segments(ct, ct_headers, ct_slices, seg_files,
                                                                      monkeypatch) -> None:
    """partial_overlaps' 5 segments as a LABELMAP (one frame per slice, each holding all 5): the
    pixel data is decoded once, not once per segment, and each segment is still its BINARY
    frames' volume minus the voxels of two or more segments."""
    binary = _expected_volumes(seg_files["partial_overlaps"], ct_headers)
    overlap = np.sum(list(binary.values()), axis=0) > 1
    labels = np.zeros(ct.hu.shape, dtype=np.uint8)
    for number, volume in binary.items():
        labels[volume & ~overlap] = number
    seg = pydicom.dcmread(_written(highdicom_seg(ct_slices, labels, {n: f"segment {n}" for n in binary})))
    decoded = _count_decoded_frames(monkeypatch)
    masks = seg_to_masks(seg, ct)
    assert len(masks) == 5 and int(seg.NumberOfFrames) < 5
    assert decoded == Counter(range(int(seg.NumberOfFrames)))
    for lesion in masks:
        np.testing.assert_array_equal(whole_mask(lesion, ct), binary[lesion.number] & ~overlap)


def test_a_multi_segment_binary_seg_decodes_each_frame_once(ct, ct_headers, seg_files, monkeypatch) -> None:
    """partial_overlaps: 5 BINARY segments with frames of their own, each frame decoded once.
    The SEG is read afresh: the fixture's pixel_array, decoded by pydicom for the expected
    volumes, is kept on it and highdicom would use it instead of decoding."""
    expected = _expected_volumes(seg_files["partial_overlaps"], ct_headers)
    seg = pydicom.dcmread(require_data(CT_SEG / "partial_overlaps.dcm"))
    decoded = _count_decoded_frames(monkeypatch)
    masks = seg_to_masks(seg, ct)
    assert decoded == Counter(range(int(seg.NumberOfFrames)))
    assert [m.number for m in masks] == sorted(expected)
    for lesion in masks:
        np.testing.assert_array_equal(whole_mask(lesion, ct), expected[lesion.number])


@pytest.mark.parametrize("reverse", [False, True], ids=["frames-in-slice-order", "frames-reversed"])
def test_segments_on_some_slices_are_read_from_those_slices_only(ct, ct_slices, reverse: bool,
                                                                 monkeypatch) -> None:
    """A BINARY SEG's segment is read as the slices from its first frame to its last, not the
    SEG's whole volume: segments on the first slice alone, the last alone, and the first and
    last with an empty slice between, each placed where its frames are (an off-by-one at
    either end would drop or shift a slice), whichever order the frames are written in; the
    volume highdicom is asked for spans exactly those slices."""
    pixels = np.zeros((*ct.hu.shape, 3), dtype=np.uint8)
    pixels[0, 100:140, 100:150, 0] = 1
    pixels[2, 200:220, 50:90, 1] = 1
    pixels[0, 300:310, 300:330, 2] = pixels[2, 305:320, 290:300, 2] = 1
    order = slice(None, None, -1) if reverse else slice(None)
    seg = highdicom_seg(ct_slices[order], pixels[order], {1: "first", 2: "last", 3: "both ends"},
                        hd.seg.SegmentationTypeValues.BINARY)
    spans: list[int] = []
    get_volume = hd.seg.Segmentation.get_volume

    def spanned(self, **kwargs):
        volume = get_volume(self, **kwargs)
        spans.append(volume.spatial_shape[0])
        return volume

    monkeypatch.setattr(hd.seg.Segmentation, "get_volume", spanned)
    masks = seg_to_masks(pydicom.dcmread(_written(seg)), ct)
    assert [m.number for m in masks] == [1, 2, 3]
    assert spans == [1, 1, 3]
    for lesion in masks:
        np.testing.assert_array_equal(whole_mask(lesion, ct), pixels[..., lesion.number - 1].astype(bool))


def test_an_off_grid_slice_is_numbered_within_the_segs_whole_stack(ct, ct_slices) -> None:
    """A segment read from its own slices still names an off-grid slice by its place in the
    SEG's whole stack of frames (as when every segment was read as the whole stack), shifted
    half a pixel: highdicom stacks these frames from the highest slice position down, so
    segment 1, read from the CT's lowest slice alone, is slice 3 of 3 (not 1 of 1)."""
    pixels = np.zeros((*ct.hu.shape, 2), dtype=np.uint8)
    pixels[0, 100:140, 100:150, 0] = 1
    pixels[2, 200:220, 50:90, 1] = 1
    seg = pydicom.dcmread(_written(highdicom_seg(ct_slices, pixels, {1: "first", 2: "last"},
                                                 hd.seg.SegmentationTypeValues.BINARY)))
    _shift_frames(seg, dx_mm=0.5 * ct.geometry.spacing[0])
    with pytest.raises(ContourError, match=r"^slice 3 of 3 of segment 1 of the SEG lies 0\.5 pixels off"):
        seg_to_masks(seg, ct)


def _written(ds: Dataset) -> BytesIO:
    """`ds` as a file: the reader sees what a receiver would, not highdicom's object."""
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return buffer


def test_seg_highdicom_cannot_read_is_a_contour_error(ct, liver: Dataset) -> None:
    """A segment description without its Type 1 category code: highdicom's message, as a ContourError."""
    del liver.SegmentSequence[0].SegmentedPropertyCategoryCodeSequence
    with pytest.raises(ContourError, match="cannot be read as a Segmentation .*SegmentedPropertyCategoryCodeSequence"):
        seg_to_masks(liver, ct)


def test_seg_without_a_segment_dimension_is_refused_by_name(ct, liver: Dataset) -> None:
    liver.DimensionIndexSequence = [d for d in liver.DimensionIndexSequence if d.DimensionIndexPointer != 0x0062000B]
    with pytest.raises(ContourError, match="DimensionIndexSequence does not index ReferencedSegmentNumber"):
        seg_to_masks(liver, ct)


def test_fractional_seg_written_by_highdicom_keeps_fractions_of_at_least_half(ct, ct_headers, ct_slices, seg_files) -> None:
    """The liver at 0.8, and outside it two 10x10 patches at 0.49 and 0.5 (stored by highdicom
    as 125/255 and 128/255): the mask is the liver plus the 0.5 patch (DICOM's and IBSI's 0.5
    threshold)."""
    liver = _expected_volumes(seg_files["liver"], ct_headers)[1]
    fractions = np.where(liver, 0.8, 0.0)
    k = next(z for z in range(liver.shape[0]) if not liver[z, :10, :30].any())
    fractions[k, :10, :10], fractions[k, :10, 20:30] = 0.49, 0.5
    seg = highdicom_seg(ct_slices, fractions[..., None], {1: "Liver"}, hd.seg.SegmentationTypeValues.FRACTIONAL)
    assert (seg.SegmentationType, seg.MaximumFractionalValue) == ("FRACTIONAL", 255)
    (lesion,) = seg_to_masks(pydicom.dcmread(_written(seg)), ct)
    expected = liver.copy()
    expected[k, :10, 20:30] = True
    np.testing.assert_array_equal(whole_mask(lesion, ct), expected)
