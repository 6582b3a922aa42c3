"""What a header claims against what its file holds and against the limits (service.dicom_limits),
on files made with pydicom from a real STS_019 slice, the real ct-seg SEG and RTSTRUCT, and a
synthetic Enhanced CT; then the same checks where imaging reads files (load_ct_series, the SEG
and RTSTRUCT readers), for files that never went through the listener.

Expected byte counts are computed here from the DICOM definition (Rows x Columns x frames x
samples x BitsAllocated/8; 1-bit SEG frames packed), not taken from the code under test.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import RLELossless

from service import dicom_limits
from service.dicom_limits import (
    INCONSISTENT, OVER_LIMIT, TRUNCATED, InstanceLimits, check_dataset, check_instance, read_header,
)
from service.errors import ContourError, InputError, InstanceBudgetError, SeriesError
from service.imaging.contours import rtstruct_to_masks, seg_to_masks
from service.imaging.volume import load_ct_series
from tests.support.ct_series import slice_pixels, write_enhanced_ct
from tests.support.external import DATA_DIR, require_data

STS_019 = DATA_DIR / "ct-rtstruct" / "STS_019"
LIVER_SEG = DATA_DIR / "ct-seg" / "liver.dcm"
LIMITS = InstanceLimits()

pytestmark = pytest.mark.filterwarnings("ignore:The value length", "ignore:Invalid value for VR")


@pytest.fixture(autouse=True, params=["read whole", "parsed from the file"])
def header_reading(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """read_header reads a small file whole and parses it in memory, a large one from the file:
    every check here is made both ways (the threshold set below any file's size)."""
    if request.param == "parsed from the file":
        monkeypatch.setattr(dicom_limits, "READ_WHOLE_BYTES", -1)


@pytest.fixture(scope="module")
def slice_file() -> Path:
    return require_data(STS_019 / "image" / "000000.dcm")


@pytest.fixture
def ct(slice_file: Path) -> Dataset:
    return pydicom.dcmread(slice_file)


@pytest.fixture
def rtstruct() -> Dataset:
    return pydicom.dcmread(next(require_data(STS_019 / "mask").iterdir()))


def _claimed_bytes(ds: Dataset) -> int:
    bits = int(ds.Rows) * int(ds.Columns) * int(ds.get("NumberOfFrames") or 1) * int(ds.SamplesPerPixel)
    return math.ceil(bits * int(ds.BitsAllocated) / 8)


def _checked_file(path: Path, limits: InstanceLimits = LIMITS) -> None:
    """The listener's checks on a file."""
    header, extent = read_header(path)
    check_instance(header, extent, limits)


def _refusal(path: Path, limits: InstanceLimits = LIMITS) -> InstanceBudgetError:
    with pytest.raises(InstanceBudgetError) as raised:
        _checked_file(path, limits)
    assert len(str(raised.value)) <= 64  # it becomes a C-STORE ErrorComment (LO)
    return raised.value


def _saved(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def _cut(source: Path, target: Path, length: int) -> Path:
    target.write_bytes(source.read_bytes()[:length])
    return target


# --- real files pass --------------------------------------------------------------------------


def test_real_ct_seg_and_rtstruct_pass_on_disk_and_in_memory(slice_file: Path):
    files = [slice_file, next(require_data(STS_019 / "mask").iterdir()), require_data(LIVER_SEG),
             require_data(DATA_DIR / "ct-seg" / "partial_overlaps.dcm")]
    for path in files:
        _checked_file(path)
        check_dataset(pydicom.dcmread(path), LIMITS)


# --- frames, matrix and pixel data length -------------------------------------------------------


def test_two_million_frames_claimed_by_one_slice_are_over_the_limit(ct: Dataset, tmp_path: Path):
    ct.NumberOfFrames = 2_000_000
    path = _saved(ct, tmp_path / "frames.dcm")
    problem = _refusal(path)
    assert (problem.reason, str(problem)) == (OVER_LIMIT, "NumberOfFrames 2000000 over the limit of 5000")
    # Within a (generous) limit, the claim is still not backed by the file: 36 KB for one frame.
    problem = _refusal(path, InstanceLimits(max_frames_per_instance=3_000_000))
    claimed = _claimed_bytes(ct)
    assert (problem.reason, str(problem)) == (INCONSISTENT, f"PixelData has {len(ct.PixelData)} of {claimed} bytes claimed")


@pytest.mark.parametrize("keyword", ["Rows", "Columns"])
def test_a_huge_matrix_is_over_the_limit(ct: Dataset, tmp_path: Path, keyword: str):
    setattr(ct, keyword, 65535)
    problem = _refusal(_saved(ct, tmp_path / "huge.dcm"))
    assert (problem.reason, str(problem)) == (OVER_LIMIT, f"{keyword} 65535 over the limit of 4096")


def test_limits_are_the_configured_ones(ct: Dataset, tmp_path: Path):
    path = _saved(ct, tmp_path / "slice.dcm")  # 134 x 136
    assert str(_refusal(path, InstanceLimits(max_rows=128))) == "Rows 134 over the limit of 128"
    _checked_file(path, InstanceLimits(max_rows=134, max_columns=136, max_frames_per_instance=1))


def test_pixel_data_cut_to_60_percent_in_the_file_is_truncated(slice_file: Path, ct: Dataset, tmp_path: Path):
    """The element still declares the full length; the file ends 40% short of it."""
    kept = int(len(ct.PixelData) * 0.6)
    header_bytes = slice_file.stat().st_size - len(ct.PixelData)
    problem = _refusal(_cut(slice_file, tmp_path / "cut.dcm", header_bytes + kept))
    assert (problem.reason, str(problem)) == (TRUNCATED, f"PixelData truncated: {kept} of {len(ct.PixelData)} bytes")


def test_pixel_data_shorter_than_claimed_is_inconsistent(ct: Dataset, tmp_path: Path):
    """Rewritten with 60% of the pixels: the element is whole, the claim is not met."""
    kept = int(len(ct.PixelData) * 0.6) // 2 * 2
    ct.PixelData = ct.PixelData[:kept]
    problem = _refusal(_saved(ct, tmp_path / "short.dcm"))
    assert (problem.reason, str(problem)) == (INCONSISTENT, f"PixelData has {kept} of {_claimed_bytes(ct)} bytes claimed")
    with pytest.raises(InputError, match=f"^instance number 0: PixelData has {kept} of"):
        check_dataset(ct, LIMITS)


def test_an_image_without_pixel_data_is_refused(ct: Dataset, tmp_path: Path):
    del ct.PixelData
    problem = _refusal(_saved(ct, tmp_path / "nopixels.dcm"))
    assert (problem.reason, str(problem)) == (INCONSISTENT, "image without PixelData (truncated or incomplete)")


def test_seg_binary_frames_are_bit_packed(tmp_path: Path):
    seg = pydicom.dcmread(require_data(LIVER_SEG))
    assert seg.BitsAllocated == 1 and len(seg.PixelData) == _claimed_bytes(seg)  # ceil(n / 8), not n
    _checked_file(LIVER_SEG)
    seg.PixelData = seg.PixelData[:-2]
    problem = _refusal(_saved(seg, tmp_path / "seg.dcm"))
    assert str(problem) == f"PixelData has {_claimed_bytes(seg) - 2} of {_claimed_bytes(seg)} bytes claimed"


def test_seg_frames_must_match_their_functional_groups(tmp_path: Path):
    seg = pydicom.dcmread(require_data(LIVER_SEG))
    frames = int(seg.NumberOfFrames)
    seg.NumberOfFrames = frames + 1
    problem = _refusal(_saved(seg, tmp_path / "seg.dcm"))
    assert (problem.reason, str(problem)) == (INCONSISTENT, f"NumberOfFrames {frames + 1} but {frames} per-frame groups")


def test_enhanced_ct_frames_must_match_their_functional_groups(tmp_path: Path):
    path = tmp_path / "enhanced.dcm"
    write_enhanced_ct(path, pydicom.uid.generate_uid(), [slice_pixels(k) for k in range(3)])
    _checked_file(path)
    enhanced = pydicom.dcmread(path)
    del enhanced.PerFrameFunctionalGroupsSequence[2]
    problem = _refusal(_saved(enhanced, tmp_path / "mismatch.dcm"))
    assert (problem.reason, str(problem)) == (INCONSISTENT, "NumberOfFrames 3 but 2 per-frame groups")


# --- encapsulated (compressed) pixel data ------------------------------------------------------


def _encapsulated(ct: Dataset, frames: list[bytes], offsets: bool = True) -> Dataset:
    ct.file_meta.TransferSyntaxUID = RLELossless
    ct.PixelData = encapsulate(frames, has_bot=offsets)
    ct["PixelData"].is_undefined_length = True
    ct["PixelData"].VR = "OB"
    ct.NumberOfFrames = len(frames)
    return ct


def test_encapsulated_pixel_data_needs_a_fragment_per_frame(ct: Dataset, tmp_path: Path):
    one = copy.deepcopy(ct)
    one.compress(RLELossless)
    fragment = one.PixelData  # a real RLE frame, as pydicom encodes it
    frame = pydicom.encaps.generate_frames(fragment, number_of_frames=1).__next__()
    good = _saved(_encapsulated(copy.deepcopy(ct), [frame, frame]), tmp_path / "good.dcm")
    _checked_file(good)
    check_dataset(pydicom.dcmread(good), LIMITS)

    claims_more = _encapsulated(copy.deepcopy(ct), [frame, frame])
    claims_more.NumberOfFrames = 2_000
    problem = _refusal(_saved(claims_more, tmp_path / "more.dcm"))
    assert (problem.reason, str(problem)) == (INCONSISTENT, "NumberOfFrames 2000 but 2 fragments")


def test_encapsulated_offset_table_must_have_one_entry_per_frame(ct: Dataset, tmp_path: Path):
    one = copy.deepcopy(ct)
    one.compress(RLELossless)
    frame = next(pydicom.encaps.generate_frames(one.PixelData, number_of_frames=1))
    ds = _encapsulated(ct, [frame, frame, frame])
    ds.NumberOfFrames = 2
    problem = _refusal(_saved(ds, tmp_path / "offsets.dcm"))
    assert str(problem) == "NumberOfFrames 2 but 3 frame offsets"


def test_encapsulated_pixel_data_cut_short_is_truncated(ct: Dataset, tmp_path: Path):
    one = copy.deepcopy(ct)
    one.compress(RLELossless)
    path = _saved(one, tmp_path / "rle.dcm")
    _checked_file(path)
    problem = _refusal(_cut(path, tmp_path / "cut.dcm", path.stat().st_size - 100))
    assert (problem.reason, str(problem)) == (TRUNCATED, "PixelData truncated inside a fragment")
    problem = _refusal(_cut(path, tmp_path / "nodelimiter.dcm", path.stat().st_size - 8))
    assert str(problem) == "PixelData truncated: no sequence delimiter"


# --- truncated headers ---------------------------------------------------------------------------


@pytest.mark.parametrize("length, message", [
    (600, "instance is truncated"),  # inside a top-level element's value
    (1000, "instance is truncated (ends inside a sequence)"),
    (803, "instance is truncated"),  # inside a tag
])
def test_a_truncated_header_is_reported_as_truncated(slice_file: Path, tmp_path: Path, length: int, message: str):
    problem = _refusal(_cut(slice_file, tmp_path / "cut.dcm", length))
    assert (problem.reason, str(problem)) == (TRUNCATED, message)


def test_a_truncated_structure_set_is_reported_as_truncated(tmp_path: Path):
    source = next(require_data(STS_019 / "mask").iterdir())
    _checked_file(source)
    for length in (source.stat().st_size // 2, source.stat().st_size - 10, source.stat().st_size - 3):
        assert _refusal(_cut(source, tmp_path / "cut.dcm", length)).reason == TRUNCATED


# --- structure sets ------------------------------------------------------------------------------


def _points(rtstruct: Dataset) -> list[int]:
    return [len(c.ContourData) // 3 for roi in rtstruct.ROIContourSequence for c in roi.ContourSequence]


def test_structure_set_rois_and_points_within_limits(rtstruct: Dataset, tmp_path: Path):
    points = _points(rtstruct)
    path = _saved(rtstruct, tmp_path / "rs.dcm")
    _checked_file(path, InstanceLimits(max_rois_per_structure_set=1, max_points_per_contour=max(points),
                                       max_contour_points=sum(points)))
    problem = _refusal(path, InstanceLimits(max_points_per_contour=max(points) - 1))
    assert (problem.reason, str(problem)) == (OVER_LIMIT, f"a contour of {max(points)} points; limit {max(points) - 1}")
    problem = _refusal(path, InstanceLimits(max_contour_points=sum(points) - 1))
    assert str(problem) == f"{sum(points)} contour points; limit {sum(points) - 1}"
    rtstruct.ROIContourSequence.append(copy.deepcopy(rtstruct.ROIContourSequence[0]))
    problem = _refusal(_saved(rtstruct, tmp_path / "two.dcm"), InstanceLimits(max_rois_per_structure_set=1))
    assert str(problem) == "2 ROIs over the limit of 1"


# --- imaging: files that never went through the listener -----------------------------------------


def test_load_ct_series_refuses_two_million_frames_before_any_per_frame_work(ct: Dataset):
    ct.NumberOfFrames = 2_000_000
    with pytest.raises(SeriesError, match=f"^instance number {ct.InstanceNumber}: NumberOfFrames 2000000 over the limit of 5000$"):
        load_ct_series([ct])


def test_load_ct_series_refuses_pixel_data_shorter_than_claimed(ct: Dataset):
    second = copy.deepcopy(ct)
    second.PixelData = second.PixelData[: len(second.PixelData) * 6 // 10 // 2 * 2]
    with pytest.raises(SeriesError, match="PixelData has .* bytes claimed"):
        load_ct_series([ct, second])


def test_seg_reader_checks_frames_before_decoding():
    seg = pydicom.dcmread(require_data(LIVER_SEG))
    seg.NumberOfFrames = 2_000_000
    with pytest.raises(ContourError, match="NumberOfFrames 2000000 over the limit of 5000"):
        seg_to_masks(seg, ct=None)  # type: ignore[arg-type]  # refused before the CT is looked at


def test_rtstruct_reader_applies_the_limits(rtstruct: Dataset):
    with pytest.raises(ContourError, match="contour points; limit 1$"):
        rtstruct_to_masks(rtstruct, ct=None, limits=InstanceLimits(max_contour_points=1))  # type: ignore[arg-type]
