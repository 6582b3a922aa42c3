"""CT series loading: real STS_019 and ct-seg series, and in-memory variants of them.

Expected values come from the DICOM headers read here with pydicom (positions, pixel spacing,
SliceThickness, Smallest/LargestImagePixelValue), not from the loader's own output.
"""

from __future__ import annotations

import copy
import math
import random
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, get_frame
from pydicom.uid import MPEG2MPML, ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless, generate_uid

from service.errors import SeriesError
from service.imaging.volume import load_ct_series, read_ct_directory
from service.sop_classes import ENHANCED_CT_IMAGE as ENHANCED_CT_IMAGE_STORAGE
from tests.support.ct_series import COLUMNS, ROWS, slice_pixels, write_ct_series
from tests.support.external import DATA_DIR, require_data
from tests.support.uids import uids_in, uids_of

STS_019 = DATA_DIR / "ct-rtstruct" / "STS_019" / "image"
CT_SEG = DATA_DIR / "ct-seg" / "ct"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"

pytestmark = pytest.mark.filterwarnings("ignore:The value length")  # STS StudyID is 17 chars


def _read_dir(path: Path) -> list[Dataset]:
    return [pydicom.dcmread(f) for f in sorted(require_data(path).glob("*.dcm"))]


@pytest.fixture(scope="module")
def sts019_files() -> list[Dataset]:
    return _read_dir(STS_019)


@pytest.fixture
def sts019(sts019_files: list[Dataset]) -> list[Dataset]:
    """A private copy: tests modify it, never the files or the module fixture."""
    return copy.deepcopy(sts019_files)


def _z(ds: Dataset) -> float:
    return float(ds.ImagePositionPatient[2])


def _item(**attributes: object) -> Dataset:
    item = Dataset()
    for keyword, value in attributes.items():
        setattr(item, keyword, value)
    return item


def _hu(ds: Dataset) -> np.ndarray:
    return ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def test_sts019_volume_is_sorted_along_z_with_header_geometry(sts019: list[Dataset]) -> None:
    ct = load_ct_series(sts019)
    ordered = sorted(sts019, key=_z)
    first = ordered[0]
    assert ct.hu.dtype == np.float32
    assert ct.hu.shape == (47, first.Rows, first.Columns)
    for k, ds in enumerate(ordered):
        np.testing.assert_array_equal(ct.hu[k], _hu(ds))
    assert ct.sop_instance_uids == tuple(ds.SOPInstanceUID for ds in ordered)
    assert ct.geometry.origin == tuple(float(v) for v in first.ImagePositionPatient)
    assert ct.geometry.size == (first.Columns, first.Rows, 47)
    # SliceThickness (3.27 mm) is an independent statement of the spacing for this contiguous
    # series; 1e-3 mm is far below any real spacing error yet above DS rounding.
    assert ct.geometry.spacing[2] == pytest.approx(float(first.SliceThickness), abs=1e-3)
    assert ct.geometry.spacing[:2] == (float(first.PixelSpacing[1]), float(first.PixelSpacing[0]))
    assert ct.geometry.direction == (1, 0, 0, 0, 1, 0, 0, 0, 1)
    assert ct.kvp == 140.0
    assert ct.series_instance_uid == first.SeriesInstanceUID
    assert ct.frame_of_reference_uid == first.FrameOfReferenceUID


def test_sts019_hu_range_matches_header_extremes(sts019: list[Dataset]) -> None:
    ct = load_ct_series(sts019)
    smallest = min(int(ds.SmallestImagePixelValue) for ds in sts019)
    largest = max(int(ds.LargestImagePixelValue) for ds in sts019)
    hu = np.asarray(ct.hu)
    assert hu.min() == smallest  # slope 1, intercept 0 in this series
    assert hu.max() == largest
    assert hu.min() == pytest.approx(-1000, abs=30)  # air


def test_a_region_read_is_each_slices_own_rescale_of_that_region(sts019: list[Dataset]) -> None:
    """The HU are computed for the region read (service.imaging.volume.RescaledSlices): each
    read, whatever its indices, equals numpy's indexing of the stack of every slice's own
    rescale, computed here per slice (slopes and intercepts differ from slice to slice)."""
    for n, ds in enumerate(sts019):
        ds.RescaleSlope, ds.RescaleIntercept = 1 + n / 64, -1024 + 3 * n
    ordered = sorted(sts019, key=_z)
    expected = np.stack([_hu(ds) for ds in ordered]).astype(np.float32)
    ct = load_ct_series(sts019)
    keys = [5, -1, np.int64(46), (slice(3, 9), slice(100, 140), slice(7, 300)), (slice(None, None, 2),),
            (4, slice(10, 20), 30), (slice(40, 60),), (slice(-3, None), -2), (slice(9, 3),), ()]
    for key in keys:
        region = ct.hu[key]
        assert region.dtype == np.float32
        np.testing.assert_array_equal(region, expected[key], err_msg=repr(key))
    np.testing.assert_array_equal(np.asarray(ct.hu), expected)
    slices, rows, columns = ct.hu.shape
    for outside, axis, size in ((slices, 0, slices), (-slices - 1, 0, slices), ((0, rows), 1, rows),
                                ((slice(2, 2), rows), 1, rows), ((slice(0, 1), slice(None), -columns - 1), 2, columns)):
        with pytest.raises(IndexError, match=f"out of bounds for axis {axis} with size {size}$"):
            ct.hu[outside]
    for not_an_index in (True, (0, np.True_), (0, 1, 2, 3), [0, 1], ...):  # numpy: a mask, too many, fancy
        with pytest.raises(IndexError, match="indexed by up to three integers or slices"):
            ct.hu[not_an_index]


def test_loading_allocates_no_whole_volume(tmp_path: Path) -> None:
    """The HU are computed for the regions read (service.imaging.volume.RescaledSlices): loading
    a clinically sized series allocates a small part of its float32 volume (the loader used to
    allocate all of it: 314 MB for 300 slices of 512 x 512), and a crop allocates its own size."""
    write_ct_series(tmp_path / "ct", generate_uid(), [slice_pixels(k) for k in range(24)])
    datasets = [pydicom.dcmread(path) for path in sorted((tmp_path / "ct").iterdir())]
    volume_bytes = 24 * ROWS * COLUMNS * np.dtype(np.float32).itemsize
    tracemalloc.start()
    try:
        ct = load_ct_series(datasets)
        loading_peak = tracemalloc.get_traced_memory()[1]
        held = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        crop = ct.hu[4:12, 100:228, 200:264]
        crop_peak = tracemalloc.get_traced_memory()[1] - held
    finally:
        tracemalloc.stop()
    assert loading_peak < volume_bytes / 4, (loading_peak, volume_bytes)  # headers parsed: ~60 KB a slice
    assert crop.nbytes == 8 * 128 * 64 * 4 and crop_peak < 4 * crop.nbytes, crop_peak
    expected = np.frombuffer(slice_pixels(4 + 5), dtype=np.int16).reshape(ROWS, COLUMNS)[100:228, 200:264]
    np.testing.assert_array_equal(crop[5], expected)  # slope 1, intercept 0


def test_input_order_does_not_matter(sts019: list[Dataset]) -> None:
    reference = load_ct_series(sts019)
    shuffled = list(sts019)
    random.Random(7).shuffle(shuffled)
    ct = load_ct_series(shuffled)
    np.testing.assert_array_equal(ct.hu, reference.hu)
    assert ct.geometry == reference.geometry
    assert ct.sop_instance_uids == reference.sop_instance_uids


def test_rescale_is_applied(sts019: list[Dataset]) -> None:
    reference = load_ct_series(copy.deepcopy(sts019))
    for ds in sts019:
        ds.PixelData = (ds.pixel_array.astype(np.int16) + 1024).tobytes()
        ds.RescaleIntercept = -1024
    np.testing.assert_array_equal(load_ct_series(sts019).hu, reference.hu)


def test_twelve_stored_bits_ignore_the_unused_high_bits(sts019: list[Dataset], caplog) -> None:
    """12 bits stored in 16 allocated, signed, with junk in the 4 unused high bits: the HU are
    the 12-bit two's-complement values (bit 11 is the sign), computed here from the bits, and
    the reader logs nothing about the copy pydicom makes to clear the junk bits (it asks
    pydicom for a read-only view only when every allocated bit is stored)."""
    expected = []
    for n, ds in enumerate(sts019):
        values = np.clip(ds.pixel_array.astype(np.int32), -2048, 2047)
        expected.append(values)
        junk = ((n % 15) + 1) << 12  # never 0: every slice carries junk
        ds.PixelData = ((values & 0x0FFF) | junk).astype(np.uint16).tobytes()
        ds.BitsStored, ds.HighBit = 12, 11
    order = np.argsort([_z(ds) for ds in sts019])
    with caplog.at_level("DEBUG", logger="pydicom"):
        ct = load_ct_series(sts019)
    np.testing.assert_array_equal(ct.hu, np.stack([expected[k] for k in order]).astype(np.float32))
    assert not [r for r in caplog.records if r.name.startswith("pydicom") and r.levelno >= 30]


def test_damaged_compressed_pixel_data_names_its_transfer_syntax(sts019: list[Dataset]) -> None:
    """A JPEG 2000 codestream cut short: the codec's complaint alone does not say which codec,
    so the error names the transfer syntax the sender used."""
    sts019[5].compress(JPEG2000Lossless)
    frame = get_frame(sts019[5].PixelData, 0, number_of_frames=1)
    sts019[5].PixelData = encapsulate([frame[: len(frame) // 3]])
    with pytest.raises(SeriesError, match=r"pixel data in JPEG 2000 Image Compression \(Lossless Only\) "
                                          r"\(1\.2\.840\.10008\.1\.2\.4\.90\) cannot be decoded"):
        load_ct_series(sts019)


def test_a_bad_plane_attribute_names_the_instance_and_frame_not_its_uid(sts019: list[Dataset]) -> None:
    """Frame readers name their frame only when they fail (service.dicom.HeaderReader): the
    name must still be the failing slice's, by modality and Instance Number."""
    del sts019[7].ImagePositionPatient
    number = sts019[7].InstanceNumber
    with pytest.raises(SeriesError, match=rf"^CT instance number {number} frame 1: ImagePositionPatient is missing$"):
        load_ct_series(sts019)


def test_pixel_data_in_a_syntax_without_decoder_says_so(sts019: list[Dataset]) -> None:
    sts019[5].compress(RLELossless)
    sts019[5].file_meta.TransferSyntaxUID = MPEG2MPML  # no pydicom decoder exists for video
    with pytest.raises(SeriesError, match=r"pixel data in MPEG2 Main Profile / Main Level \(1\.2\.840\.10008\.1\.2"
                                          r"\.4\.100\), for which no decoder is installed, cannot be decoded"):
        load_ct_series(sts019)


def _drop_sorted(indices: list[int]):
    def mutate(slices: list[Dataset]) -> list[Dataset]:
        ordered = sorted(slices, key=_z)
        return [ds for k, ds in enumerate(ordered) if k not in indices]

    return mutate


def _mix_series(slices: list[Dataset]) -> list[Dataset]:
    other = generate_uid()
    for ds in slices[::2]:
        ds.SeriesInstanceUID = other
    return slices


def _mix_frames(slices: list[Dataset]) -> list[Dataset]:
    other = generate_uid()
    for ds in slices[::2]:
        ds.FrameOfReferenceUID = other
    return slices


def _tilt_attribute(slices: list[Dataset]) -> list[Dataset]:
    for ds in slices:
        ds.GantryDetectorTilt = 15
    return slices


def _shear(slices: list[Dataset]) -> list[Dataset]:
    """Positions as a 15 degree tilted gantry produces them, with an axial orientation."""
    ordered = sorted(slices, key=_z)
    shift_per_slice = 3.27 * math.tan(math.radians(15))
    for k, ds in enumerate(ordered):
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [round(x, 6), round(y + k * shift_per_slice, 6), round(z, 6)]
    return slices


def _move_one_slice(slices: list[Dataset]) -> list[Dataset]:
    ds = sorted(slices, key=_z)[20]
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    ds.ImagePositionPatient = [x, y, round(z + 0.5, 6)]
    return slices


def _not_ct(slices: list[Dataset]) -> list[Dataset]:
    slices[3].Modality = "MR"
    slices[3].SOPClassUID = MR_IMAGE_STORAGE
    return slices


def _duplicate(slices: list[Dataset]) -> list[Dataset]:
    twin = copy.deepcopy(slices[10])
    twin.SOPInstanceUID = generate_uid()
    return slices + [twin]


def _rotate_one(slices: list[Dataset]) -> list[Dataset]:
    slices[5].ImageOrientationPatient = [0, 1, 0, -1, 0, 0]
    return slices


def _other_matrix(slices: list[Dataset]) -> list[Dataset]:
    slices[5].Rows = slices[5].Rows - 1
    return slices


def _other_pixel_spacing(slices: list[Dataset]) -> list[Dataset]:
    slices[5].PixelSpacing = [0.9, 0.9]
    return slices


def _single(slices: list[Dataset]) -> list[Dataset]:
    return slices[:1]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_drop_sorted([20]), r"missing slices .*: 1 missing after position -163\.50 mm$"),
        (
            _drop_sorted([20, 21, 30]),
            r"missing slices .*: 2 missing after position -163\.50 mm; "
            r"1 missing after position -130\.80 mm$",
        ),
        (_mix_series, "mixed series: 2 different SeriesInstanceUID values$"),
        (_mix_frames, "mixed Frames of Reference in one series: 2 different FrameOfReferenceUID values$"),
        (_tilt_attribute, "gantry tilt of 15 degrees"),
        (_shear, "sheared stack"),
        (_move_one_slice, "non-uniform slice spacing"),
        (_not_ct, "is not a CT image"),
        (_duplicate, "duplicate slice position"),
        (_rotate_one, "mixed orientations"),
        (_other_matrix, "differing Rows/Columns"),
        (_other_pixel_spacing, "differing PixelSpacing"),
        (_single, "single slice"),
    ],
)
def test_unusable_series_is_rejected_with_its_reason(
    sts019: list[Dataset], mutate, message: str
) -> None:
    """The reason names no patient identifier and no UID (an instance by its Instance Number)."""
    patient_id = str(sts019[0].PatientID)
    mutated = mutate(sts019)
    with pytest.raises(SeriesError, match=message) as error:
        load_ct_series(mutated)
    assert patient_id not in str(error.value)
    assert uids_in(str(error.value), uids_of(mutated)) == []


def test_spacing_tolerance_is_a_setting(sts019: list[Dataset]) -> None:
    """A 0.5 mm displacement passes only if the caller allows that much."""
    ct = load_ct_series(_move_one_slice(sts019), spacing_tolerance_mm=0.6)
    assert ct.hu.shape[0] == 47


def test_ct_seg_three_slices_load(tmp_path: Path) -> None:
    files = _read_dir(CT_SEG)
    ct = read_ct_directory(CT_SEG)
    ordered = sorted(files, key=_z)
    assert ct.hu.shape == (3, 512, 512)
    assert ct.geometry.spacing[2] == pytest.approx(_z(ordered[1]) - _z(ordered[0]), abs=1e-4)
    np.testing.assert_array_equal(ct.hu[0], ordered[0].pixel_array - 1024.0)  # intercept -1024
    assert ct.kvp == 120.0


def test_directory_without_ct_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not DICOM")
    with pytest.raises(SeriesError, match=r"no CT image in the directory \(1 files, 0 of them DICOM\)"):
        read_ct_directory(tmp_path)


def test_directory_skips_non_dicom_files(tmp_path: Path) -> None:
    for ds in _read_dir(CT_SEG):
        ds.save_as(tmp_path / f"{ds.SOPInstanceUID}.dcm")
    (tmp_path / "README").write_text("not DICOM")
    assert read_ct_directory(tmp_path).hu.shape == (3, 512, 512)


def _enhanced_ct(slices: list[Dataset]) -> Dataset:
    """One Enhanced CT instance holding the slices as frames, in the given (unsorted) order.

    Pixels are stored unsigned with +1024 and a per-frame intercept of -1024, so a reader that
    ignored the functional groups' rescale would be off by 1024 HU.
    """
    first = slices[0]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ENHANCED_CT_IMAGE_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "CT"
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "Rows", "Columns"):
        setattr(ds, keyword, getattr(first, keyword))
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.NumberOfFrames = len(slices)
    ds.SharedFunctionalGroupsSequence = [
        _item(
            PlaneOrientationSequence=[_item(ImageOrientationPatient=first.ImageOrientationPatient)],
            PixelMeasuresSequence=[
                _item(PixelSpacing=first.PixelSpacing, SliceThickness=first.SliceThickness)
            ],
            CTXRayDetailsSequence=[_item(KVP=first.KVP)],
        )
    ]
    ds.PerFrameFunctionalGroupsSequence = [
        _item(
            PlanePositionSequence=[_item(ImagePositionPatient=s.ImagePositionPatient)],
            PixelValueTransformationSequence=[
                _item(RescaleSlope=1, RescaleIntercept=-1024, RescaleType="HU")
            ],
        )
        for s in slices
    ]
    ds.PixelData = np.stack([(_hu(s) + 1024).astype(np.uint16) for s in slices]).tobytes()
    return ds


def test_enhanced_ct_gives_the_single_frame_volume(sts019: list[Dataset]) -> None:
    reference = load_ct_series(sts019)
    shuffled = list(sts019)
    random.Random(3).shuffle(shuffled)
    enhanced = _enhanced_ct(shuffled)
    ct = load_ct_series([enhanced])
    np.testing.assert_array_equal(ct.hu, reference.hu)
    assert ct.geometry == reference.geometry
    assert ct.sop_instance_uids == (enhanced.SOPInstanceUID,) * 47
    assert ct.sop_class_uid == ENHANCED_CT_IMAGE_STORAGE
    assert ct.kvp == 140.0


def test_coronal_series_geometry_maps_indices_to_dicom_positions(sts019: list[Dataset]) -> None:
    """A non-axial stack: both ImageGeometry and the SimpleITK image must agree with DICOM.

    Rows run along +x and columns along -z, so the normal (row x column) is +y; slices are
    placed along +y, in reverse file order so sorting matters. Pixels are made non-square
    (0.8 mm between rows, 1.2 mm between columns) so that swapping them would show.
    """
    ordered = sorted(sts019, key=_z)
    row, column, normal = np.array([1.0, 0, 0]), np.array([0, 0, -1.0]), np.array([0, 1.0, 0])
    base = np.array([-50.0, 20.0, 100.0])
    for k, ds in enumerate(ordered):
        ds.ImageOrientationPatient = [*row, *column]
        ds.ImagePositionPatient = list(base + (len(ordered) - 1 - k) * 3.27 * normal)
        ds.PixelSpacing = [0.8, 1.2]
    ct = load_ct_series(ordered)
    np.testing.assert_array_equal(ct.hu[0], _hu(ordered[-1]))
    ijk = np.array([[0, 0, 0], [3, 5, 7], [135, 133, 46]], dtype=float)
    expected = base + ijk[:, :1] * 1.2 * row + ijk[:, 1:2] * 0.8 * column + ijk[:, 2:] * 3.27 * normal
    np.testing.assert_allclose(ct.geometry.index_to_physical(ijk), expected, atol=1e-6)
    image = sitk.GetImageFromArray(ct.hu)  # as the scorer builds its images (scoring.resample)
    image.SetSpacing(ct.geometry.spacing)
    image.SetOrigin(ct.geometry.origin)
    image.SetDirection(ct.geometry.direction)
    itk_points = [image.TransformContinuousIndexToPhysicalPoint(tuple(p)) for p in ijk]
    np.testing.assert_allclose(itk_points, expected, atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(image), ct.hu)
