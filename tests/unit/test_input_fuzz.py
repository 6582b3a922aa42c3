"""Malformed headers get a typed input error, never a crash: property-based tests of the readers.

Each example takes the small valid study of tests.support.small_study and damages a few of its
attributes, at any depth of its sequences: deletes one, empties or truncates a sequence, or
replaces a value by raw bytes as a file could hold them (NaN, inf, 1e999, non-numbers, a wrong
count of values, a wrong length of a binary value). pydicom keeps such values as strings or
raises on access, so this reaches every place a reader converts a header value. The property:
reading the study either succeeds or raises an InputError (which names the problem); any other
exception is a crash site, which the service would report as "internal error".

The examples are drawn with a fixed seed (derandomize) and bounded, so CI runs the same ones in
a few seconds. `scripts/fuzz-inputs` runs the same properties with many more examples
(HYPOTHESIS_PROFILE=long), and a byte-level atheris target (README.md, Tests).
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.tag import BaseTag
from pydicom.uid import RLELossless

from service.errors import ContourError, InputError, SeriesError
from service.imaging.contours import LESION_ROI_TYPES, lesion_rois, rtstruct_to_masks, seg_to_masks
from service.imaging.volume import load_ct_series
from service.model import CtSeries
from service.imaging.selection import lesion_masks, select_inputs
from tests.support import small_study

settings.register_profile(
    "ci", max_examples=150, deadline=None, derandomize=True, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "5000")), deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

pytestmark = pytest.mark.filterwarnings("ignore")  # pydicom warns about every invalid value it reads

PIXEL_DATA = BaseTag(0x7FE00010)
_BINARY_FORMATS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}
# Values a damaged or careless writer leaves in numeric and coded strings.
_TOKENS = [
    "", " ", "nan", "NaN", "inf", "-inf", "1e999", "-1e999", "1e308", "-1e308", "abc", "1.2.3", "0", "-0",
    "1", "-1", "2", "3", "0.5", "7", "8", "64", "65535", "2147483648", "99999999999", "1e-320",
    "CLOSED_PLANAR", "CLOSED_PLANAR_XOR", "OPEN_PLANAR", "POINT", "BINARY", "FRACTIONAL", "GTV", "CT",
]
_TOKEN = st.one_of(st.sampled_from(_TOKENS), st.text(alphabet="0123456789.-+eE", max_size=6))


@dataclass(frozen=True)
class _Site:
    """One element of a (possibly nested) dataset: where a mutation applies."""

    dataset: Dataset
    tag: BaseTag
    vr: str


def _sites(ds: Dataset) -> list[_Site]:
    """Every element of `ds` and of its sequence items, depth first; never the pixel data."""
    sites = []
    for tag in ds.keys():
        element = ds.get_item(tag)  # as stored: an earlier damage must not be decoded here
        if tag == PIXEL_DATA:
            continue
        sites.append(_Site(ds, tag, element.VR))
        if element.VR == "SQ":
            for item in element.value:
                sites.extend(_sites(item))
    return sites


def _raw(site: _Site, value: bytes) -> RawDataElement:
    return RawDataElement(site.tag, site.vr, len(value), value, 0, False, True)


@st.composite
def _raw_value(draw: st.DrawFn, site: _Site) -> bytes:
    """Bytes for the element at `site`: a damaged version of its value, or a new wrong one."""
    if site.vr in _BINARY_FORMATS:
        fmt = _BINARY_FORMATS[site.vr]
        packed = st.lists(st.integers(-(2**31), 2**32 - 1) if fmt not in "fd" else st.floats(), max_size=3).map(
            lambda values: b"".join(_pack(fmt, v) for v in values)
        )
        return draw(st.one_of(packed, st.binary(max_size=9)))
    element = site.dataset.get_item(site.tag)
    if isinstance(element, RawDataElement):
        tokens = (element.value or b"").decode("ascii", "replace").split("\\")
    else:
        tokens = [str(v) for v in (element.value if element.VM > 1 else [element.value])]
    choice = draw(st.integers(0, 3))
    if choice == 0 and tokens:  # one value replaced
        tokens[draw(st.integers(0, len(tokens) - 1))] = draw(_TOKEN)
    elif choice == 1 and tokens:  # one value too many or too few
        if draw(st.booleans()):
            tokens.append(draw(_TOKEN))
        else:
            tokens.pop()
    else:  # a new list of values
        tokens = draw(st.lists(_TOKEN, max_size=7))
    return "\\".join(tokens).encode("ascii")


def _pack(fmt: str, value: float) -> bytes:
    try:
        return struct.pack("<" + fmt, value)
    except struct.error:  # out of the type's range: its low bytes, as a sloppy writer would
        return struct.pack("<q", int(value))[: struct.calcsize(fmt)] if fmt not in "fd" else b""


@st.composite
def _damage(draw: st.DrawFn, datasets: list[Dataset]) -> None:
    """Damage 1-3 elements of `datasets` in place."""
    for _ in range(draw(st.integers(1, 3))):
        ds = datasets[draw(st.integers(0, len(datasets) - 1))]
        sites = _sites(ds)
        site = sites[draw(st.integers(0, len(sites) - 1))]
        actions = ["delete", "value", "value", "value"] if site.vr != "SQ" else ["delete", "empty", "drop item"]
        action = draw(st.sampled_from(actions))
        if action == "delete":
            del site.dataset[site.tag]
        elif action == "empty":
            site.dataset[site.tag].value = []
        elif action == "drop item":
            items = site.dataset[site.tag].value
            if items:
                del items[draw(st.integers(0, len(items) - 1))]
        else:
            site.dataset[site.tag] = _raw(site, draw(_raw_value(site)))


def _only_input_errors(read: Callable[[], object]) -> None:
    """Run `read`; an InputError is a correct answer to damaged input, anything else a crash."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            read()
        except InputError as error:
            assert str(error), "an InputError must say what is wrong"


@pytest.fixture(scope="module")
def ct() -> CtSeries:
    return load_ct_series(small_study.ct_slices())


def test_the_undamaged_study_reads() -> None:
    """Sanity check of the builder: otherwise every property would pass on errors alone."""
    for series in (small_study.ct_slices(), [small_study.enhanced_ct()]):
        volume = load_ct_series(series)
        assert volume.hu.shape == (small_study.SLICES, small_study.ROWS, small_study.COLUMNS)
    ct = load_ct_series(small_study.ct_slices())
    keep, skipped = lesion_rois(small_study.rtstruct())
    assert keep == {1} and len(skipped) == 1
    (lesion,) = rtstruct_to_masks(small_study.rtstruct(), ct, keep)
    assert lesion.voxel_count == 2 * 16 and lesion.warnings == []
    (segment,) = seg_to_masks(small_study.seg(), ct)
    assert segment.voxel_count == 2 * 9


@given(enhanced=st.booleans(), data=st.data())
def test_damaged_ct_headers_give_series_errors(enhanced: bool, data: st.DataObject) -> None:
    datasets = [small_study.enhanced_ct()] if enhanced else small_study.ct_slices()
    data.draw(_damage(datasets), label="damage")
    _only_input_errors(lambda: load_ct_series(datasets))


@given(data=st.data())
def test_damaged_rtstruct_gives_contour_errors(ct: CtSeries, data: st.DataObject) -> None:
    rtstruct = small_study.rtstruct()
    data.draw(_damage([rtstruct]), label="damage")

    def read() -> None:
        keep, _ = lesion_rois(rtstruct, LESION_ROI_TYPES)
        rtstruct_to_masks(rtstruct, ct, keep)

    _only_input_errors(read)


_COORDINATE = st.one_of(
    st.floats(-6, 6),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -1e308, 1e-320]),
    st.floats(allow_nan=True, allow_infinity=True),
)


@given(
    points=st.lists(st.tuples(_COORDINATE, _COORDINATE, st.one_of(st.none(), _COORDINATE)), min_size=1, max_size=12),
    extra=st.one_of(st.just([]), st.lists(_COORDINATE, min_size=1, max_size=2)),
    slice_index=st.integers(0, small_study.SLICES - 1),
)
def test_any_contour_data_gives_a_mask_or_a_contour_error(
    ct: CtSeries, points: list[tuple[float, float, float | None]], extra: list[float], slice_index: int
) -> None:
    """ContourData as numbers (not strings): NaN, inf, huge, any count, any shape (a None z is
    the slice's own z, so that most polygons get as far as rasterisation)."""
    z = small_study.slice_z(slice_index)
    data = [v for x, y, w in points for v in (x, y, z if w is None else w)] + extra
    rtstruct = small_study.rtstruct([data])
    _only_input_errors(lambda: rtstruct_to_masks(rtstruct, ct))


@given(data=st.data())
def test_damaged_seg_gives_contour_errors(ct: CtSeries, data: st.DataObject) -> None:
    seg = small_study.seg()
    data.draw(_damage([seg]), label="damage")
    _only_input_errors(lambda: seg_to_masks(seg, ct))


@given(contour_kind=st.sampled_from(["rtstruct", "seg"]), enhanced=st.booleans(), data=st.data())
def test_damaged_study_is_selected_and_read_or_fails_with_an_input_error(
    contour_kind: str, enhanced: bool, data: st.DataObject
) -> None:
    """The whole reading path of a study: choosing its series and contours, then the masks."""
    contours = small_study.rtstruct() if contour_kind == "rtstruct" else small_study.seg()
    datasets = ([small_study.enhanced_ct()] if enhanced else small_study.ct_slices()) + [contours]
    data.draw(_damage(datasets), label="damage")

    def read() -> None:
        inputs, _ = select_inputs(datasets)
        lesion_masks(inputs, LESION_ROI_TYPES)

    _only_input_errors(read)


# --- crash sites the fuzzing found, one example each, with the error they now give ------------


def _raw_attribute(ds: Dataset, keyword: str, value: bytes) -> None:
    """Put `keyword` as raw bytes in `ds`, as read from a file (decoded only on access)."""
    tag = BaseTag(tag_for_keyword(keyword))
    ds[tag] = RawDataElement(tag, dictionary_VR(tag), len(value), value, 0, False, True)


def _first_contour(rtstruct: Dataset) -> Dataset:
    return rtstruct.ROIContourSequence[0].ContourSequence[0]


_CT_CASES = [
    ("ImagePositionPatient", lambda slices: _raw_attribute(slices[1], "ImagePositionPatient", b"-4\\nan\\2"), "value 2 is not finite"),
    ("ImagePositionPatient", lambda slices: _raw_attribute(slices[1], "ImagePositionPatient", b"-4\\-4"), "has 2 values, expected 3"),
    ("ImageOrientationPatient", lambda slices: _raw_attribute(slices[0], "ImageOrientationPatient", b"1\\0\\0\\0\\x\\0"), "value 5 is not a number"),
    ("PixelSpacing", lambda slices: _raw_attribute(slices[2], "PixelSpacing", b"1e999\\1"), "value 1 is not finite"),
    ("RescaleSlope", lambda slices: _raw_attribute(slices[3], "RescaleSlope", b"abc"), "value 1 is not a number"),
    ("RescaleIntercept", lambda slices: _raw_attribute(slices[3], "RescaleIntercept", b"1\\2"), "has 2 values"),
    ("Rows", lambda slices: _raw_attribute(slices[0], "Rows", b"\x08"), "cannot be decoded"),
    ("Columns", lambda slices: delattr(slices[0], "Columns"), "is missing"),
    ("NumberOfFrames", lambda slices: _raw_attribute(slices[0], "NumberOfFrames", b"abc"), "is not a number"),
    ("GantryDetectorTilt", lambda slices: _raw_attribute(slices[0], "GantryDetectorTilt", b"nan"), "is not finite"),
    ("SOPClassUID", lambda slices: _raw_attribute(slices[0], "SOPClassUID", b"1.2\\1.3"), "has 2 values"),
    ("SOPInstanceUID", lambda slices: delattr(slices[0], "SOPInstanceUID"), "is missing"),
]


@pytest.mark.parametrize(("keyword", "damage", "problem"), _CT_CASES, ids=[f"{k}-{p}" for k, _, p in _CT_CASES])
def test_ct_crash_sites_now_name_the_attribute(keyword: str, damage: Callable, problem: str) -> None:
    slices = small_study.ct_slices()
    damage(slices)
    with pytest.raises(SeriesError, match=f"{keyword} .*{problem}|{keyword} {problem}"):
        load_ct_series(slices)


def test_enhanced_ct_without_a_per_frame_item_names_the_sequence() -> None:
    ds = small_study.enhanced_ct()
    del ds.PerFrameFunctionalGroupsSequence[3]
    with pytest.raises(SeriesError, match="NumberOfFrames 4 but 3 per-frame groups"):
        load_ct_series([ds])


_RTSTRUCT_CASES = [
    ("ROINumber", lambda rt: _raw_attribute(rt.StructureSetROISequence[0], "ROINumber", b"x"), "item 1 of StructureSetROISequence .*: ROINumber value 1 is not a number"),
    ("ReferencedROINumber", lambda rt: delattr(rt.ROIContourSequence[1], "ReferencedROINumber"), "item 2 of ROIContourSequence .*: ReferencedROINumber is missing"),
    ("ReferencedROINumber", lambda rt: _raw_attribute(rt.RTROIObservationsSequence[0], "ReferencedROINumber", b"1.5"), "RTROIObservationsSequence .*: ReferencedROINumber is not an integer"),
    ("ContourData", lambda rt: _raw_attribute(_first_contour(rt), "ContourData", b"-2.5\\-2.5\\nan\\1.5\\-2.5\\2\\1.5\\1.5\\2"), "contour 1 of ROI 1 .*: ContourData value 3 is not finite"),
    ("ContourData", lambda rt: _raw_attribute(_first_contour(rt), "ContourData", b"-2.5\\-2.5\\2\\1.5\\-2.5\\2\\1.5\\1.5\\2\\"), "contour 1 of ROI 1 .*: ContourData value 10 is not a number"),
    ("ContourData", lambda rt: _raw_attribute(_first_contour(rt), "ContourData", b"0\\0\\1.7e308\\1\\0\\1.7e308\\1\\1\\1.7e308"), "contour 1 of ROI 1 .* too far off the CT grid"),
    ("ContourGeometricType", lambda rt: _raw_attribute(_first_contour(rt), "ContourGeometricType", b"CLOSED_PLANAR\\POINT"), "ContourGeometricType has 2 values"),
]


@pytest.mark.parametrize(("keyword", "damage", "message"), _RTSTRUCT_CASES, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(_RTSTRUCT_CASES)])
def test_rtstruct_crash_sites_now_name_the_attribute(ct: CtSeries, keyword: str, damage: Callable, message: str) -> None:
    rtstruct = small_study.rtstruct()
    damage(rtstruct)
    with pytest.raises(ContourError, match=message):
        keep, _ = lesion_rois(rtstruct)
        rtstruct_to_masks(rtstruct, ct, keep)


_SEG_CASES = [
    ("more frames than the pixel data holds", lambda seg: setattr(seg, "NumberOfFrames", 3), "NumberOfFrames 3 but 2 per-frame groups"),
    ("frames larger than the pixel data", lambda seg: setattr(seg, "Rows", 16), "PixelData has 16 of 32 bytes claimed"),
    ("Rows too small for the data", lambda seg: setattr(seg, "Rows", 0), "Rows 0 is not positive"),
    ("SegmentNumber", lambda seg: _raw_attribute(seg.SegmentSequence[0], "SegmentNumber", b"\x01"), "SegmentNumber cannot be decoded"),
    ("ReferencedSegmentNumber", lambda seg: _raw_attribute(seg.PerFrameFunctionalGroupsSequence[0].SegmentIdentificationSequence[0], "ReferencedSegmentNumber", b"\x01\x00\x00"), "frame 1 of the SEG: ReferencedSegmentNumber cannot be decoded"),
    ("SegmentationType", lambda seg: _raw_attribute(seg, "SegmentationType", b"BINARY\\FRACTIONAL"), "SegmentationType has 2 values"),
    ("MaximumFractionalValue", lambda seg: (setattr(seg, "SegmentationType", "FRACTIONAL"), _raw_attribute(seg, "MaximumFractionalValue", b"\x01")), "MaximumFractionalValue cannot be decoded"),
    ("missing PerFrameFunctionalGroupsSequence item", lambda seg: seg.PerFrameFunctionalGroupsSequence.pop(), "NumberOfFrames 2 but 1 per-frame groups"),
    ("PixelSpacing", lambda seg: _raw_attribute(seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0], "PixelSpacing", b"1"), "frame 1: PixelSpacing has 1 values, expected 2"),
]


@pytest.mark.parametrize(("case", "damage", "message"), _SEG_CASES, ids=[c for c, _, _ in _SEG_CASES])
def test_seg_crash_sites_now_give_contour_errors(ct: CtSeries, case: str, damage: Callable, message: str) -> None:
    seg = small_study.seg()
    damage(seg)
    with pytest.raises(ContourError, match=message):
        seg_to_masks(seg, ct)


def test_an_roi_contour_item_without_its_roi_number_is_a_contour_error_when_lesions_are_counted() -> None:
    """Found by the byte-level fuzzer: the count of lesions with contours read the number
    unchecked (AttributeError, reported as an internal error)."""
    rtstruct = small_study.rtstruct()
    delattr(rtstruct.ROIContourSequence[0], "ReferencedROINumber")
    inputs, _ = select_inputs(small_study.ct_slices() + [rtstruct])
    with pytest.raises(ContourError, match="item 1 of ROIContourSequence .*: ReferencedROINumber is missing"):
        lesion_masks(inputs, LESION_ROI_TYPES)


def test_multi_valued_sop_class_in_a_study_is_an_input_error() -> None:
    datasets = small_study.ct_slices() + [small_study.rtstruct()]
    _raw_attribute(datasets[-1], "SOPClassUID", b"1.2\\1.3")
    with pytest.raises(InputError, match="SOPClassUID has 2 values"):
        select_inputs(datasets)


@pytest.mark.parametrize("keyword", ["SOPInstanceUID", "SeriesInstanceUID"])
def test_a_contour_object_without_its_identifying_uids_is_an_input_error(keyword: str) -> None:
    """The outputs reference the contour object by instance and series: without either, the
    study fails before scoring with the attribute named (it was an AttributeError after)."""
    datasets = small_study.ct_slices() + [small_study.rtstruct()]
    delattr(datasets[-1], keyword)
    with pytest.raises(InputError, match=f"the contour object: {keyword}"):
        select_inputs(datasets)


def _uids_of(datasets: list[Dataset]) -> set[str]:
    """The identifying UIDs of `datasets`: their instances', series' and studies'."""
    keywords = ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")
    return {str(ds.get(keyword)) for ds in datasets for keyword in keywords if ds.get(keyword)}


def _ct_error(damage: Callable) -> tuple[str, set[str]]:
    slices = small_study.ct_slices()
    uids = _uids_of(slices)
    damage(slices)
    with pytest.raises(SeriesError) as error:
        load_ct_series(slices)
    return str(error.value), uids


def _contour_error(contours: Dataset, damage: Callable, read: Callable[[Dataset], object]) -> tuple[str, set[str]]:
    uids = _uids_of([contours])
    damage(contours)
    with pytest.raises(ContourError) as error:
        read(contours)
    return str(error.value), uids


def _read_rtstruct(rtstruct: Dataset, ct: CtSeries) -> None:
    keep, _ = lesion_rois(rtstruct)
    rtstruct_to_masks(rtstruct, ct, keep)


@pytest.mark.parametrize("case", [("ct", damage) for _, damage, _ in _CT_CASES]
                         + [("rtstruct", damage) for _, damage, _ in _RTSTRUCT_CASES]
                         + [("seg", damage) for _, damage, _ in _SEG_CASES]
                         + [("seg", lambda seg: delattr(seg.SegmentSequence[0], "SegmentedPropertyCategoryCodeSequence")),
                            ("seg", lambda seg: setattr(seg, "SOPClassUID", small_study.ct_slices()[0].SOPClassUID))])
def test_errors_name_the_ct_seg_and_rtstruct_without_their_uids(ct: CtSeries, case: tuple[str, Callable]) -> None:
    """Errors are shown to users, stored as the study's error and printed by `status`: they name
    an instance by its role or Instance Number, never by a UID that could identify the study."""
    kind, damage = case
    if kind == "ct":
        message, uids = _ct_error(damage)
    elif kind == "rtstruct":
        message, uids = _contour_error(small_study.rtstruct(), damage, lambda rt: _read_rtstruct(rt, ct))
    else:
        message, uids = _contour_error(small_study.seg(), damage, lambda seg: seg_to_masks(seg, ct))
    assert uids and not any(uid in message for uid in uids), message


def test_an_undecodable_ct_instance_is_named_by_its_instance_number() -> None:
    slices = small_study.ct_slices()
    slices[2].InstanceNumber = 3
    slices[2].file_meta.TransferSyntaxUID = RLELossless
    slices[2].PixelData = encapsulate([b"\x07" * 128])  # an RLE header claiming 117901063 segments
    with pytest.raises(SeriesError) as error:
        load_ct_series(slices)
    assert str(error.value).startswith("CT instance number 3: pixel data in RLE Lossless"), str(error.value)
    assert slices[2].SOPInstanceUID not in str(error.value)
