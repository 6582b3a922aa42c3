"""What an instance's header claims, checked against its file and against limits, before
anything is allocated.

Readers size their work by the header: NumberOfFrames frames, Rows x Columns pixels each,
one polygon per contour. A 40 KB file claiming 2,000,000 frames, a slice cut to 60% of its
pixel data or an absurd Rows value therefore costs minutes and gigabytes before anything
fails. Here the claims are compared with the bytes actually present and with configured limits,
so such an instance is refused where it enters: at C-STORE (the listener, reading the file
without loading its pixels) and again in imaging (for files that never went through the
listener, such as the offline `score` and `features` commands).

This module must stay light: the listener imports it, and must not pull in the scoring stack
(pyradiomics, SimpleITK). Messages name attributes and counts, never patient data or UIDs, and
stay within the 64 characters of a C-STORE ErrorComment.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.filereader import data_element_generator
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import DeflatedExplicitVRLittleEndian
from pynetdicom.dsutils import split_dataset

from service.errors import InputError, InstanceBudgetError
from service.dicom import HeaderReader
from service.sop_classes import IMAGE_SOP_CLASSES

# Bounded reasons (metric labels of rcds_instances_rejected_total)
OVER_LIMIT = "over_limit"
INCONSISTENT = "inconsistent"
TRUNCATED = "truncated"

PIXEL_DATA = 0x7FE00010
_ITEM, _SEQUENCE_DELIMITER = 0xFFFEE000, 0xFFFEE0DD
_UNDEFINED_LENGTH = 0xFFFFFFFF
_CONTOUR_DATA = 0x30060050
_IMAGE_PIXEL_ATTRIBUTES = ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel", "PhotometricInterpretation")


@dataclass(frozen=True)
class InstanceLimits:
    """The largest instance the service accepts (settings max_*, see the README)."""

    # An Enhanced CT of a whole body at thin slices has about 2,000-3,000 frames: 5,000 leaves room.
    max_frames_per_instance: int = 5000
    # CT is 512 (some 768/1024, micro-CT 2048); 4096 admits every clinical matrix.
    max_rows: int = 4096
    max_columns: int = 4096
    # A full planning structure set has 50-200 ROIs; 1,000 is beyond any clinical one.
    max_rois_per_structure_set: int = 1000
    # A body outline at sub-millimetre resolution has a few thousand points per plane.
    max_points_per_contour: int = 100_000
    # 200 ROIs x 300 planes x ~80 points; bounds the rasterising time of one structure set.
    max_contour_points: int = 5_000_000


class _Inconsistent(InstanceBudgetError):
    """A header attribute that is malformed (HeaderReader's error type for the checks here)."""

    def __init__(self, message: str) -> None:
        super().__init__(INCONSISTENT, message)


_HEADER = HeaderReader("image", _Inconsistent)


@dataclass(frozen=True)
class PixelDataExtent:
    """What the PixelData element holds: its byte length, or for encapsulated (compressed) data
    the number of fragments and of Basic Offset Table entries."""

    length: int | None  # None: undefined length (encapsulated)
    fragments: int = 0
    basic_offsets: int = 0


# --- header claims ----------------------------------------------------------------------------


def check_instance(header: Dataset, extent: PixelDataExtent | None, limits: InstanceLimits) -> None:
    """Every check that applies to `header`: image claims against limits and against the pixel
    data, structure-set sizes against limits. `extent` None: no PixelData element."""
    if "ROIContourSequence" in header:
        check_structure_set(header, limits)
    if header.get("SOPClassUID") in IMAGE_SOP_CLASSES or extent is not None:
        if extent is None:
            raise InstanceBudgetError(INCONSISTENT, "image without PixelData (truncated or incomplete)")
        check_pixel_data(header, check_image_claims(header, limits), extent)


def check_image_claims(header: Dataset, limits: InstanceLimits) -> int:
    """NumberOfFrames (returned), Rows and Columns within limits, and as many per-frame
    functional groups as frames (Enhanced CT, SEG), before anything is sized by them."""
    missing = [keyword for keyword in _IMAGE_PIXEL_ATTRIBUTES if not _HEADER.values(header, keyword)]
    if missing:
        raise InstanceBudgetError(INCONSISTENT, f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing")
    frames = _number_of_frames(header)
    for keyword, value, limit in (
        ("NumberOfFrames", frames, limits.max_frames_per_instance),
        ("Rows", _integer(header, "Rows"), limits.max_rows),
        ("Columns", _integer(header, "Columns"), limits.max_columns),
    ):
        if value > limit:
            raise InstanceBudgetError(OVER_LIMIT, f"{keyword} {value} over the limit of {limit}")
        if value < 1:
            raise InstanceBudgetError(INCONSISTENT, f"{keyword} {value} is not positive")
    groups = header.get("PerFrameFunctionalGroupsSequence")
    if groups is not None and len(groups) != frames:
        raise InstanceBudgetError(INCONSISTENT, f"NumberOfFrames {frames} but {len(groups)} per-frame groups")
    bits = _integer(header, "BitsAllocated")
    if bits != 1 and (bits < 8 or bits % 8):
        raise InstanceBudgetError(INCONSISTENT, f"BitsAllocated {bits} is neither 1 nor whole bytes")
    return frames


def _number_of_frames(header: Dataset) -> int:
    """NumberOfFrames, absent or empty meaning 1 (single-frame images)."""
    frames = _HEADER.optional_integer(header, "NumberOfFrames")
    return 1 if frames is None else frames


def _integer(header: Dataset, keyword: str) -> int:
    """One whole number; several values, text or a fraction is an inconsistent header."""
    return _HEADER.integer(header, keyword)


def check_pixel_data(header: Dataset, frames: int, extent: PixelDataExtent) -> None:
    """The PixelData holds what Rows x Columns x frames x samples x bits claim.

    Native data must have at least the claimed bytes (more is padding that readers ignore).
    Encapsulated data has no length to compare; each frame starts a fragment of its own
    (PS3.5 A.4), so there must be at least one fragment per frame, and a Basic Offset Table,
    when present, has one entry per frame.
    """
    if extent.length is not None:
        _HEADER.integer(header, "SamplesPerPixel")
        _HEADER.text(header, "PhotometricInterpretation", required=True)
        expected = get_expected_length(header)
        if extent.length < expected:
            raise InstanceBudgetError(INCONSISTENT, f"PixelData has {extent.length} of {expected} bytes claimed")
        return
    if extent.fragments < frames:
        raise InstanceBudgetError(INCONSISTENT, f"NumberOfFrames {frames} but {extent.fragments} fragments")
    if extent.basic_offsets not in (0, frames):
        raise InstanceBudgetError(INCONSISTENT, f"NumberOfFrames {frames} but {extent.basic_offsets} frame offsets")


def check_structure_set(header: Dataset, limits: InstanceLimits) -> None:
    """ROIs and contour points within limits, counted without decoding ContourData."""
    rois = header.get("ROIContourSequence") or []
    if len(rois) > limits.max_rois_per_structure_set:
        raise InstanceBudgetError(OVER_LIMIT, f"{len(rois)} ROIs over the limit of {limits.max_rois_per_structure_set}")
    total = 0
    for roi in rois:
        for contour in roi.get("ContourSequence") or []:
            points = _value_count(contour, _CONTOUR_DATA) // 3
            if points > limits.max_points_per_contour:
                raise InstanceBudgetError(
                    OVER_LIMIT, f"a contour of {points} points; limit {limits.max_points_per_contour}")
            total += points
    if total > limits.max_contour_points:
        raise InstanceBudgetError(OVER_LIMIT, f"{total} contour points; limit {limits.max_contour_points}")


def _value_count(item: Dataset, tag: int) -> int:
    """How many values a multi-valued text element holds; counted in the raw bytes while it is
    undecoded (decoding 300,000 DS values is itself the cost being bounded)."""
    if tag not in item:
        return 0
    element = item.get_item(tag)
    if isinstance(element.value, bytes | bytearray):
        return element.value.count(b"\\") + 1 if element.value.strip(b" \x00") else 0
    return element.VM


# --- in memory (imaging) ------------------------------------------------------------------------


def check_dataset(ds: Dataset, limits: InstanceLimits, error: type[InputError] = InputError) -> None:
    """check_instance for a dataset read whole (its PixelData, if any, in memory), raising
    `error` (SeriesError for CT, ContourError for contours) that names the instance by number."""
    try:
        check_instance(ds, dataset_extent(ds), limits)
    except InstanceBudgetError as problem:
        number = ds.get("InstanceNumber")
        which = f"instance number {number}" if number not in (None, "") else "an instance"
        raise error(f"{which}: {problem}") from problem


def dataset_extent(ds: Dataset) -> PixelDataExtent | None:
    """The PixelData of a dataset in memory; None without one."""
    if PIXEL_DATA not in ds:
        return None
    element = ds.get_item(PIXEL_DATA)
    value = element.value or b""
    encapsulated = getattr(element, "is_undefined_length", False) or getattr(element, "length", 0) == _UNDEFINED_LENGTH
    if not encapsulated:
        return PixelDataExtent(length=len(value))
    return _encapsulated_extent(BytesIO(value), len(value), delimited=False)


# --- on disk (listener) -------------------------------------------------------------------------


# Files up to this size (a CT or MR slice) are read whole and their header parsed in memory:
# parsing a file costs a seek or tell per element, each a system call that lets go of the GIL,
# and with concurrent associations each of those waits to get it back. Larger files (multi-frame
# images, big SEGs) are parsed from the file, so that their pixels are never loaded.
READ_WHOLE_BYTES = 4 * 1024 * 1024


def read_header(path: Path) -> tuple[Dataset, PixelDataExtent | None]:
    """The header of a DICOM file and its PixelData extent (None: no PixelData), without
    reading the pixels.

    InstanceBudgetError(TRUNCATED) if the file ends inside an element: pydicom then returns a
    partial dataset without complaint, which would otherwise be reported as missing attributes.
    Deflated files are inflated by pydicom in memory, where no file position applies: their
    extent comes from a whole read.
    """
    size = path.stat().st_size
    with path.open("rb") as file:
        fp: BinaryIO = BytesIO(file.read()) if size <= READ_WHOLE_BYTES else file
        try:
            header = pydicom.dcmread(fp, stop_before_pixels=True)
        except (EOFError, OSError):  # pydicom's "No tag to read": the file ended inside a sequence
            raise InstanceBudgetError(TRUNCATED, "instance is truncated (ends inside a sequence)") from None
        if header.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
            return header, dataset_extent(pydicom.dcmread(path))
        if _at_pixel_data(fp, header):
            return header, _file_extent(fp, header, size)
        _check_complete(fp, header, path, size)
    return header, None


def _endianness(header: Dataset) -> str:
    return ">" if header.original_encoding[1] is False else "<"


def _at_pixel_data(fp: BinaryIO, header: Dataset) -> bool:
    """pydicom stops reading with the file positioned at the PixelData tag, if there is one."""
    tag = fp.read(4)
    fp.seek(-len(tag), 1)
    return len(tag) == 4 and struct.unpack(f"{_endianness(header)}HH", tag) == (PIXEL_DATA >> 16, PIXEL_DATA & 0xFFFF)


def _file_extent(fp: BinaryIO, header: Dataset, size: int) -> PixelDataExtent:
    """The PixelData element at the file position: its value length, checked to be in the file."""
    fp.seek(4 if header.original_encoding[0] else 8, 1)  # tag; explicit VR: VR and 2 reserved bytes
    raw = fp.read(4)
    if len(raw) < 4:
        raise InstanceBudgetError(TRUNCATED, "instance is truncated at PixelData")
    (length,) = struct.unpack(f"{_endianness(header)}L", raw)
    if length == _UNDEFINED_LENGTH:
        return _encapsulated_extent(fp, size, delimited=True)
    available = size - fp.tell()
    if length > available:
        raise InstanceBudgetError(TRUNCATED, f"PixelData truncated: {available} of {length} bytes")
    return PixelDataExtent(length=length)


def _encapsulated_extent(fp: BinaryIO, end: int, *, delimited: bool) -> PixelDataExtent:
    """Basic Offset Table entries and fragments, counted from the item headers while seeking
    over the data; every item must lie before `end`. `delimited`: the value must end with a
    sequence delimitation item (in a file; pydicom drops it from a value in memory)."""
    offsets: int | None = None
    fragments = 0
    while True:
        raw = fp.read(8)
        if len(raw) < 8:
            if delimited or raw:
                raise InstanceBudgetError(TRUNCATED, "PixelData truncated: no sequence delimiter")
            break
        group, element, length = struct.unpack("<HHL", raw)  # encapsulated syntaxes are little endian
        if (group << 16 | element) == _SEQUENCE_DELIMITER:
            break
        if (group << 16 | element) != _ITEM or length == _UNDEFINED_LENGTH:
            raise InstanceBudgetError(INCONSISTENT, "PixelData holds a malformed fragment item")
        if fp.tell() + length > end:
            raise InstanceBudgetError(TRUNCATED, "PixelData truncated inside a fragment")
        if offsets is None:
            offsets = length // 4
        else:
            fragments += 1
        fp.seek(length, 1)
    return PixelDataExtent(length=None, fragments=fragments, basic_offsets=offsets or 0)


def _check_complete(fp: BinaryIO, header: Dataset, path: Path, size: int) -> None:
    """A file without PixelData must end where its last top-level element does.

    pydicom stops quietly on a partial tag and reads a cut value short, so the header it returns
    cannot tell; walking the top-level elements again (seeking over every value) gives where
    each one ends. A sequence cut inside makes pydicom raise.
    """
    if not len(header):
        raise InstanceBudgetError(TRUNCATED, "instance is truncated or empty")
    _, end = split_dataset(path)
    fp.seek(end)
    implicit, little = header.original_encoding
    try:
        for _ in data_element_generator(fp, bool(implicit), little is not False, defer_size=0):
            end = fp.tell()
    except (EOFError, OSError):
        raise InstanceBudgetError(TRUNCATED, "instance is truncated (ends inside a sequence)") from None
    if end != size:
        raise InstanceBudgetError(TRUNCATED, "instance is truncated")
