"""RTSTRUCT ROIs and SEG segments -> boolean lesion masks on the CT grid.

Both readers place contours by Frame of Reference and patient coordinates, never by the
referenced SOP Instance UIDs: real structure sets refer to instances that no longer exist
(images re-exported with new UIDs; docs/method.md section 1), while their coordinates stay right.
A SEG is read through highdicom, which stacks its frames by position; its slices are placed here.
Both use one placement rule (`nearest_slice_index`, GRID_TOLERANCE) and one way of
assembling per-slice pieces into a cropped mask, so RTSTRUCT and SEG lesions are comparable.

Lesions that enclose no voxel are skipped and logged (by number and UID, never by name or
patient), not returned empty: a lesion without voxels has no volume, features or score, and an
empty mask would force every later stage to special-case it.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import TypeVar

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import UID

from service.dicom_limits import InstanceLimits, check_dataset
from service.errors import ContourError, FrameOfReferenceMismatch
from service.dicom import HeaderReader
from service.imaging.volume import frame_plane, functional_group_item
from service.model import CodedConcept, CtSeries, LesionMask, LesionSource
from service.observability import redact_uids
from service.sop_classes import RT_STRUCTURE_SET, SEGMENTATION_SOP_CLASSES, sop_class_name

logger = logging.getLogger(__name__)
_T = TypeVar("_T")


# How far (in voxels) a contour plane or a SEG pixel may sit from the CT grid and still count as
# on it. Contours and SEG frames made on a CT lie on its slice planes up to decimal rounding
# (micrometres); a quarter voxel absorbs that with a wide margin, yet stays well under the half
# voxel at which the nearest slice/pixel becomes ambiguous. Anything further off was drawn on
# another grid (another reconstruction), and snapping it would silently shift the lesion.
GRID_TOLERANCE = 0.25

# A contour is checked for edges that cross each other up to this many points (all pairs of edges,
# vectorised: about 0.2 s at this size). Real contours have tens to a few thousand points; the
# check only adds a warning, so a longer one is rasterised unchecked rather than slowly.
SELF_INTERSECTION_MAX_POINTS = 5_000
# Edge pairs compared per block: bounds the check's memory (a few arrays of this many floats).
_EDGE_PAIRS_PER_BLOCK = 1 << 20

# CLOSED_PLANAR_XOR (added to the standard for exactly this) states the even-odd rule that
# RTSTRUCT practice applies to CLOSED_PLANAR contours anyway, so both rasterise the same way.
_CLOSED_TYPES = frozenset({"CLOSED_PLANAR", "CLOSED_PLANAR_XOR"})


@dataclass(frozen=True)
class _Piece:
    """The set voxels of one slice of a lesion, cropped to their bounding box."""

    z: int
    y0: int
    x0: int
    plane: np.ndarray  # bool (rows, columns)


def nearest_slice_index(z_indices: np.ndarray, n_slices: int, what: str) -> int:
    """The CT slice on which continuous z indices (of one planar object) lie.

    Every value must be within GRID_TOLERANCE of the same integer, and that slice must exist.
    """
    k = _snap(z_indices, what, "slice spacings")
    if not 0 <= k < n_slices:
        raise ContourError(f"{what} lies outside the CT volume (slice {k}; the CT has {n_slices})")
    return k


def _snap(values: np.ndarray, what: str, unit: str) -> int:
    """The integer all `values` round to, within GRID_TOLERANCE, else ContourError."""
    values = np.asarray(values, dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):  # coordinates near the float limit
        centre = float(values.mean())
    if not np.isfinite(centre):
        raise ContourError(f"{what} lies too far off the CT grid to be placed")
    k = int(np.rint(centre))
    off = float(np.max(np.abs(values - k)))
    if off > GRID_TOLERANCE:
        raise ContourError(
            f"{what} lies {off:.3g} {unit} off the CT grid (tolerance {GRID_TOLERANCE}): it was "
            "not drawn on this CT's slices/pixels"
        )
    return k


def _check_frame_of_reference(uid: str | None, ct: CtSeries, what: str) -> None:
    """`what` lies in the CT's Frame of Reference, else FrameOfReferenceMismatch. The error
    names the two by role, never by UID (it is shown to users and stored; a UID can identify
    the study); the UIDs go to the DEBUG log."""
    if uid != ct.frame_of_reference_uid:
        logger.debug("%s is in Frame of Reference %s; the CT series %s is in %s",
                     what, uid or "(none)", ct.series_instance_uid, ct.frame_of_reference_uid)
        raise FrameOfReferenceMismatch(
            f"{what} states no Frame of Reference, so it cannot be placed on the CT series" if not uid else
            f"{what} is in another Frame of Reference than the CT series it is to be placed on: it "
            "was drawn on another scan"
        )


def _check_sop_class(ds: Dataset, expected: Collection[str], name: str) -> str:
    """The instance's SOP Instance UID, once it is known to be an instance of one of `expected`.

    Errors name the instance by its role (the SEG, the RTSTRUCT), never by this UID: they are
    shown to users, stored as the study's error and printed by `status`, and a UID can identify
    the patient's study. The UID is logged here at DEBUG for a developer.
    """
    if str(ds.get("SOPClassUID")) not in expected:  # str: a multi-valued one is not hashable
        raise ContourError(f"the contours' instance is not an {name} ({sop_class_name(ds.get('SOPClassUID'))})")
    uid = HeaderReader(f"an {name}", ContourError).text(ds, "SOPInstanceUID", required=True)
    logger.debug("reading %s %s", name, uid)
    return uid


def _numbered(ds: Dataset, sequence: str, keyword: str, what: str) -> list[tuple[int, Dataset]]:
    """(number, item) for each item of `sequence` of `ds`, its number read from `keyword`
    (ROI Number, Referenced ROI Number, Segment Number), which must be an integer."""
    return [
        (HeaderReader(f"item {i} of {sequence} of {what}", ContourError).integer(item, keyword), item)
        for i, item in enumerate(ds.get(sequence) or [], start=1)
    ]


def contoured_roi_numbers(rtstruct: Dataset) -> set[int]:
    """The ROI Numbers with at least one contour; ContourError naming the ROIContourSequence item
    whose Referenced ROI Number is missing or not an integer, as the masks' reading names it."""
    return {number for number, item in _numbered(rtstruct, "ROIContourSequence", "ReferencedROINumber", "the RTSTRUCT")
            if item.get("ContourSequence")}


def _crop_piece(z: int, y0: int, x0: int, plane: np.ndarray) -> _Piece | None:
    """`plane` (placed at rows y0.., columns x0.. of slice z) cut to its set voxels; None if empty."""
    rows = np.flatnonzero(plane.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(plane.any(axis=0))
    cropped = plane[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return _Piece(z, y0 + int(rows[0]), x0 + int(cols[0]), cropped.astype(bool))


def _assemble(pieces: list[_Piece]) -> tuple[tuple[int, int, int], np.ndarray] | None:
    """Union of per-slice pieces as (offset_zyx, mask cropped to its bounding box)."""
    if not pieces:
        return None
    low = np.min([(p.z, p.y0, p.x0) for p in pieces], axis=0)
    high = np.max([(p.z + 1, p.y0 + p.plane.shape[0], p.x0 + p.plane.shape[1]) for p in pieces], axis=0)
    mask = np.zeros(tuple(high - low), dtype=bool)
    for p in pieces:
        z, y, x = p.z - low[0], p.y0 - low[1], p.x0 - low[2]
        mask[z, y : y + p.plane.shape[0], x : x + p.plane.shape[1]] |= p.plane
    return (int(low[0]), int(low[1]), int(low[2])), mask


# --- RTSTRUCT ---------------------------------------------------------------------------------


# RT ROI Interpreted Types that are lesions. A planning structure set also holds the body
# outline, organs at risk, PTVs and supports: those must never be scored as lesions. An ROI
# without a type ("") is kept: a radiologist's annotation often has none.
LESION_ROI_TYPES: frozenset[str] = frozenset({"GTV", ""})


def lesion_rois(rtstruct: Dataset, lesion_types: frozenset[str] = LESION_ROI_TYPES) -> tuple[set[int], list[str]]:
    """(ROI numbers to score, one note per ROI skipped for its RT ROI Interpreted Type)."""
    what = "the RTSTRUCT"
    _check_sop_class(rtstruct, {RT_STRUCTURE_SET}, "RTSTRUCT")
    types = {
        number: HeaderReader(f"ROI {number} of {what}", ContourError).text(item, "RTROIInterpretedType").upper()
        for number, item in _numbered(rtstruct, "RTROIObservationsSequence", "ReferencedROINumber", what)
    }
    keep, skipped = set(), []
    for number, _ in _numbered(rtstruct, "StructureSetROISequence", "ROINumber", what):
        roi_type = types.get(number, "")
        if roi_type in lesion_types:
            keep.add(number)
        else:
            skipped.append(f"ROI {number} not scored: RT ROI Interpreted Type {roi_type} is not a lesion type")
    return keep, skipped


def rtstruct_to_masks(rtstruct: Dataset, ct: CtSeries, roi_numbers: set[int] | None = None,
                      limits: InstanceLimits = InstanceLimits()) -> list[LesionMask]:
    """One LesionMask per ROI (of `roi_numbers`, default all) with contours enclosing at least
    one CT voxel centre.

    Raises FrameOfReferenceMismatch if an ROI with contours is not in the CT's Frame of
    Reference (the whole structure set is then unusable: docs/method.md section 1), and
    ContourError if a closed contour is off the CT's slice planes or outside the volume, or if
    the structure set has more ROIs or contour points than `limits` allow.
    """
    uid = _check_sop_class(rtstruct, {RT_STRUCTURE_SET}, "RTSTRUCT")
    check_dataset(rtstruct, limits, ContourError)
    contours_of = {
        number: item.get("ContourSequence") or []
        for number, item in _numbered(rtstruct, "ROIContourSequence", "ReferencedROINumber", "the RTSTRUCT")
    }
    masks = []
    for number, roi in _numbered(rtstruct, "StructureSetROISequence", "ROINumber", "the RTSTRUCT"):
        contours = contours_of.get(number)
        if not contours or (roi_numbers is not None and number not in roi_numbers):
            continue
        what = f"ROI {number} of the RTSTRUCT"
        read = HeaderReader(what, ContourError)
        _check_frame_of_reference(read.text(roi, "ReferencedFrameOfReferenceUID"), ct, what)
        source = _Source(number, read.text(roi, "ROIName"), uid, _input_uid(read, roi, "ConceptualVolumeUID"))
        lesion = _roi_mask(source, contours, ct, what)
        if lesion is not None:
            masks.append(lesion)
    return masks


@dataclass(frozen=True)
class _Source:
    """Which ROI of which RTSTRUCT a mask comes from."""

    number: int
    name: str
    sop_instance_uid: str
    conceptual_volume_uid: str | None


def _input_uid(read: HeaderReader, item: Dataset, keyword: str) -> str | None:
    """A lesion identity UID the input carries (TrackingUID, ConceptualVolumeUID); one that is
    not a valid UID is not an identity to carry into our reports, and is ignored."""
    value = read.text(item, keyword)
    return value if value and UID(value).is_valid else None


def _roi_mask(source: _Source, contours: list[Dataset], ct: CtSeries, what: str) -> LesionMask | None:
    names = [f"contour {j} of {what}" for j in range(1, len(contours) + 1)]
    kinds = [HeaderReader(name, ContourError).text(c, "ContourGeometricType") for name, c in zip(names, contours)]
    ignored = Counter(kind for kind in kinds if kind not in _CLOSED_TYPES)
    by_slice: dict[int, list[np.ndarray]] = defaultdict(list)
    crossing = []
    for j, (name, contour, kind) in enumerate(zip(names, contours, kinds), start=1):
        if kind in _CLOSED_TYPES:
            z, polygon = _place_contour(contour, ct, name)
            by_slice[z].append(polygon)
            if self_intersects(polygon):
                crossing.append(
                    f"contour {j} of ROI {source.number}, on slice {z + 1} of {ct.geometry.size[2]}, intersects "
                    "itself; filled by the even-odd rule"
                )
    pieces = [p for z, polygons in by_slice.items() if (p := _rasterise(z, polygons, ct)) is not None]
    assembled = _assemble(pieces)
    if assembled is None:
        logger.warning("%s encloses no CT voxel centre; skipped", what)
        return None
    offset, mask = assembled
    return LesionMask(
        number=source.number,
        name=source.name,
        source=LesionSource.RTSTRUCT,
        source_sop_class_uid=RT_STRUCTURE_SET,
        source_sop_instance_uid=source.sop_instance_uid,
        offset_zyx=offset,
        mask=mask,
        tracking_uid=source.conceptual_volume_uid,
        warnings=crossing + [
            f"ignored {n} {kind or 'untyped'} contour(s) of ROI {source.number}: only closed "
            "planar contours enclose a volume"
            for kind, n in sorted(ignored.items())
        ],
    )


def _place_contour(contour: Dataset, ct: CtSeries, what: str) -> tuple[int, np.ndarray]:
    """(CT slice index, polygon as continuous (x, y) voxel indices) of one closed contour."""
    data = HeaderReader(what, ContourError).numbers(contour, "ContourData")
    if data.size % 3:
        raise ContourError(f"{what}: ContourData has {data.size} values, not (x, y, z) triplets")
    ijk = ct.geometry.physical_to_index(data.reshape(-1, 3))
    nx, ny, nz = ct.geometry.size
    z = nearest_slice_index(ijk[:, 2], nz, what)
    # The volume covers voxel centres 0..n-1 and their half-voxel margins; a contour beyond that
    # was cut by the field of view, and its mask would silently miss part of the lesion.
    outside = (ijk[:, 0] < -0.5) | (ijk[:, 0] > nx - 0.5) | (ijk[:, 1] < -0.5) | (ijk[:, 1] > ny - 0.5)
    if outside.any():
        raise ContourError(f"{what} extends outside the CT volume in-plane (slice {z})")
    return z, ijk[:, :2]


def self_intersects(polygon: np.ndarray) -> bool:
    """Whether two non-adjacent edges of the closed polygon (N x 2 points) cross each other.

    A bow-tie or figure-eight contour is drawn as one region but filled by the even-odd rule as
    two, or with a hole: its mask is not what was meant, so the caller warns. Every pair of edges
    is tested (orientation signs of each edge's ends relative to the other, strictly opposite on
    both: a proper crossing), a block of edges at a time to bound memory. Polygons longer than
    SELF_INTERSECTION_MAX_POINTS are not checked.
    """
    n = len(polygon)
    if n < 4 or n > SELF_INTERSECTION_MAX_POINTS:
        return False
    start_x, start_y = polygon[:, 0], polygon[:, 1]
    end_x, end_y = np.roll(start_x, -1), np.roll(start_y, -1)
    step_x, step_y = end_x - start_x, end_y - start_y

    def side(edge: np.ndarray | slice, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Cross product of edge `edge`'s direction with (point - edge start): its sign is the side."""
        return step_x[edge] * (y - start_y[edge]) - step_y[edge] * (x - start_x[edge])

    block = max(1, _EDGE_PAIRS_PER_BLOCK // n)
    for first in range(0, n - 2, block):
        i = np.arange(first, min(first + block, n - 2))[:, None]
        j = np.arange(first + 2, n)[None, :]
        pairs = (j > i + 1) & ~((i == 0) & (j == n - 1))  # not the same edge, not neighbours
        ends_of_j = side(i, start_x[j], start_y[j]) * side(i, end_x[j], end_y[j])
        ends_of_i = side(j, start_x[i], start_y[i]) * side(j, end_x[i], end_y[i])
        if np.any(pairs & (ends_of_j < 0) & (ends_of_i < 0)):
            return True
    return False


def _rasterise(z: int, polygons: list[np.ndarray], ct: CtSeries) -> _Piece | None:
    """Voxels of slice z whose centre is inside the polygons, by the even-odd rule.

    The even-odd rule over all edges of all polygons of the slice at once is the XOR of the
    polygons: a contour inside another is a hole, disjoint contours are all filled.
    """
    points = np.concatenate(polygons)
    x0, y0 = (max(int(np.ceil(v)), 0) for v in points.min(axis=0))
    x1, y1 = (min(int(np.floor(v)), n - 1) for v, n in zip(points.max(axis=0), ct.geometry.size[:2]))
    if x1 < x0 or y1 < y0:
        return None
    starts = points
    ends = np.concatenate([np.roll(p, -1, axis=0) for p in polygons])
    inside = _even_odd(starts, ends, x0, y0, x1 - x0 + 1, y1 - y0 + 1)
    return _crop_piece(z, y0, x0, inside)


def _even_odd(
    starts: np.ndarray, ends: np.ndarray, x0: int, y0: int, width: int, height: int
) -> np.ndarray:
    """Crossing-number test of the voxel centres of a box, vectorised by scanline.

    For each row of centres, find where the edges cross it (half-open in y, so a vertex on the
    row is counted once), then a centre is inside if an odd number of crossings lie left of it:
    a cumulative sum of crossing "toggles" along the row gives that parity for every column.
    """
    ys = y0 + np.arange(height, dtype=float)
    ya, yb = starts[:, 1, None], ends[:, 1, None]
    edge, row = np.nonzero((ya <= ys) != (yb <= ys))
    xa, xb = starts[edge, 0], ends[edge, 0]
    t = (ys[row] - starts[edge, 1]) / (ends[edge, 1] - starts[edge, 1])
    crossing_x = xa + t * (xb - xa)
    # Centre column j (at x0 + j) has the crossing on its left iff j > crossing_x - x0.
    first_column = np.clip(np.floor(crossing_x - x0).astype(int) + 1, 0, width)
    toggles = np.zeros((height, width + 1), dtype=np.int32)
    np.add.at(toggles, (row, first_column), 1)
    return (np.cumsum(toggles[:, :width], axis=1) % 2).astype(bool)


# --- SEG --------------------------------------------------------------------------------------

_REFERENCED_SEGMENT_NUMBER = Tag("ReferencedSegmentNumber")
_SEGMENTATION_TYPES = ("BINARY", "FRACTIONAL", "LABELMAP")


def seg_to_masks(seg: Dataset, ct: CtSeries, limits: InstanceLimits = InstanceLimits()) -> list[LesionMask]:
    """One LesionMask per segment of a DICOM SEG that has at least one set voxel.

    highdicom reads the SEG (Segmentation.from_dataset): it decodes the frames, each once
    (`_segment_volumes`), sorts them by position into a volume (get_volume) and gives each
    segment as a binary array, whatever the SegmentationType: BINARY, FRACTIONAL (kept where the value is at least half of
    MaximumFractionalValue: the IBSI mask threshold, also used for resampled masks) and LABELMAP
    (one frame per position, a pixel's value is its segment number). Each slice of that volume
    must then lie on the CT grid: same orientation and pixel spacing, an integer in-plane pixel
    offset (a SEG covering part of the CT is fine) and a CT slice plane, each within
    GRID_TOLERANCE. A SEG on another grid is rejected, not resampled: nearest-neighbour
    resampling would move the lesion boundary by up to half a voxel, changing volume and ring
    features without anyone seeing it; the producer should write the SEG on the CT's grid
    (highdicom and dcmqi do by default).

    Before highdicom sees the SEG, its frames, matrix and pixel data are checked against
    `limits` and each other, and every header value highdicom relies on is read here, so that
    a damaged SEG fails with the attribute named rather than with whatever highdicom raises.

    highdicom takes `seg` over in place (from_dataset without its deep copy, which cost a
    tenth of a second for ten segments on 300 slices): it becomes a highdicom Segmentation, its
    UIDs and SOP Class as they were (all its callers read afterwards), though highdicom keeps
    only the first code of each segment's property category and type, and holds an index of its
    frames for as long as the dataset lives.
    """
    what = "the SEG"
    _check_sop_class(seg, SEGMENTATION_SOP_CLASSES, "SEG (Segmentation or Label Map Segmentation Storage)")
    check_dataset(seg, limits, ContourError)
    read = HeaderReader(what, ContourError)
    _check_frame_of_reference(read.text(seg, "FrameOfReferenceUID"), ct, what)
    threshold = _binary_threshold(seg, read)
    segments = dict(_numbered(seg, "SegmentSequence", "SegmentNumber", what))
    positions = _check_frames(seg, set(segments), read.text(seg, "SegmentationType") != "LABELMAP", what)
    image = _from_highdicom(what, lambda: hd.seg.Segmentation.from_dataset(seg, copy=False))
    masks = []
    for volume in _segment_volumes(image, threshold, positions, what):
        number = volume.number
        assembled = _assemble(_place_volume(volume, ct, f"segment {number} of {what}"))
        if assembled is None:
            logger.warning("segment %d of %s has no set voxel; skipped", number, what)
            continue
        masks.append(_segment_mask(seg, number, segments[number], *assembled))
    return masks


@dataclass(frozen=True)
class _SegmentVolume:
    """One segment as a boolean volume (slices, rows, columns) of the SEG's stack of frames:
    `affine` maps its (slice, row, column) indices to patient coordinates; its first slice is
    slice `first_slice` (zero-based) of the `stack_slices` of the SEG's whole stack, which is
    how errors number its slices."""

    number: int
    inside: np.ndarray
    affine: np.ndarray
    first_slice: int
    stack_slices: int


def _segment_volumes(image: hd.seg.Segmentation, threshold: int, positions: dict[int, list[np.ndarray]],
                     what: str) -> Iterator[_SegmentVolume]:
    """Each segment as a _SegmentVolume, without a LABELMAP's background (its
    PixelPaddingValue), one segment's volume at a time.

    Each frame is decoded once. A BINARY or FRACTIONAL segment has frames of its own (their
    positions: `positions`, from _check_frames), so highdicom's get_volume for that segment
    decodes only those, and is asked for the slices between its first and last frame alone
    (_segment_slices): the SEG's whole volume would be allocated and scanned once per segment,
    most of it empty (300 slices of 512 x 512 for a lesion on 20 of them). Every LABELMAP
    frame holds all segments: it is read once as the stored label volume (combine_segments, no
    relabelling, a dtype as wide as the stored values so none wraps onto a segment number) and
    each segment is the voxels holding its number. highdicom's per-segment get_volume would
    decode the whole pixel data again for every segment and expand it to a one-hot array each
    time.
    """
    numbers = list(image.segment_numbers)
    if not numbers:  # a LABELMAP of its background alone: nothing to read
        return
    if image.segmentation_type == hd.seg.SegmentationTypeValues.LABELMAP:
        dtype = np.uint8 if int(image.BitsAllocated) <= 8 else np.uint16
        labels = _from_highdicom(what, lambda: image.get_volume(
            segment_numbers=numbers, combine_segments=True, relabel=False, dtype=dtype))
        _require_described_labels(labels.array, numbers, int(image.get("PixelPaddingValue", 0)), what)
        for number in numbers:
            yield _SegmentVolume(number, labels.array == number, labels.affine, 0, labels.spatial_shape[0])
        return
    geometry = _from_highdicom(what, lambda: image.get_volume_geometry(allow_missing_positions=True))
    for number in numbers:
        start, end = _segment_slices(geometry, positions.get(number, []))
        volume = _from_highdicom(what, lambda: image.get_volume(
            segment_numbers=[number], rescale_fractional=False, slice_start=start, slice_end=end, as_indices=True))
        stack_slices = geometry.spatial_shape[0] if geometry is not None else volume.spatial_shape[0]
        yield _SegmentVolume(number, volume.array[..., 0] >= threshold, volume.affine, start or 0, stack_slices)


def _segment_slices(geometry: hd.VolumeGeometry | None,
                    positions: list[np.ndarray]) -> tuple[int | None, int | None]:
    """The slices of the SEG's volume (`geometry`: highdicom's, of all its frames) that hold a
    segment's frames (`positions`: their ImagePositionPatient), as get_volume's slice_start and
    slice_end (zero-based: as_indices). A slice index is the frame position's first volume
    index (highdicom's map_reference_to_indices), rounded: frames sit on slice planes. (None, None),
    the whole volume, when the frames do not stack into one (then get_volume says why), when the
    segment has no frame, or when an index falls outside the volume: that would be a frame
    placed differently from highdicom's stacking, and reading every slice then keeps it."""
    if geometry is None or not positions:
        return None, None
    slices = geometry.map_reference_to_indices(np.asarray(positions), round_output=True)[:, 0]
    first, last = int(slices.min()), int(slices.max())
    if first < 0 or last >= geometry.spatial_shape[0]:
        return None, None
    return first, last + 1


def _require_described_labels(labels: np.ndarray, numbers: list[int], background: int, what: str) -> None:
    """ContourError when a LABELMAP holds a value that is neither a described segment nor its
    background: that region would otherwise vanish without a word (it could be a lesion whose
    SegmentSequence item was lost)."""
    present = np.flatnonzero(np.bincount(labels.ravel()))
    unknown = sorted(set(present.tolist()) - set(numbers) - {background})
    if unknown:
        raise ContourError(f"{what}: pixel value(s) {', '.join(map(str, unknown[:5]))} name no segment of its "
                           "SegmentSequence and are not its background (PixelPaddingValue)")


def _binary_threshold(seg: Dataset, read: HeaderReader) -> int:
    """The smallest stored value that counts as inside a segment: 1, or for a FRACTIONAL SEG
    half of MaximumFractionalValue, rounded up (0.5 itself is inside)."""
    kind = read.text(seg, "SegmentationType")
    if kind not in _SEGMENTATION_TYPES:
        read.fail("SegmentationType", f"is {kind or 'missing'}; only {', '.join(_SEGMENTATION_TYPES)} are supported")
    if kind != "FRACTIONAL":
        return 1
    maximum = read.optional_integer(seg, "MaximumFractionalValue") or 0
    if maximum <= 0:
        read.fail("MaximumFractionalValue", "must be positive in a FRACTIONAL SEG")
    return (maximum + 1) // 2


def _check_frames(seg: Dataset, segments: set[int], per_segment: bool, what: str) -> dict[int, list[np.ndarray]]:
    """Every frame's plane (position, orientation, spacing) reads; in a BINARY or FRACTIONAL
    SEG every frame names a defined segment (a LABELMAP frame holds all of them), and the
    segment is a dimension: highdicom finds a segment's frames through DimensionIndexSequence.
    Returns each segment's frame positions (ImagePositionPatient), in a BINARY or FRACTIONAL
    SEG; in a LABELMAP, none."""
    read = HeaderReader(what, ContourError)
    dimensions = seg.get("DimensionIndexSequence") or []
    if not dimensions:
        read.fail("DimensionIndexSequence", "is missing")
    pointers = {read.single(item, "DimensionIndexPointer", required=True) for item in dimensions}
    if per_segment and _REFERENCED_SEGMENT_NUMBER not in pointers:
        read.fail("DimensionIndexSequence", "does not index ReferencedSegmentNumber")
    positions: dict[int, list[np.ndarray]] = defaultdict(list)
    for f in range(read.optional_integer(seg, "NumberOfFrames") or 1):
        plane = frame_plane(seg, f, error=ContourError)
        if not per_segment:
            continue
        if (number := _referenced_segment(seg, f, what)) not in segments:
            raise ContourError(f"frame {f + 1} of {what} refers to segment {number}, which is not defined")
        positions[number].append(plane.position)
    return positions


def _from_highdicom(what: str, call: Callable[[], _T]) -> _T:
    """`call`'s result, or what it raises as a ContourError that carries highdicom's message,
    its UIDs redacted (the message as is goes to the DEBUG log).

    highdicom, and pydicom decoding under it, raise many types for a SEG they cannot read (a
    missing Type 1 attribute, frames that do not stack into a regular volume, undecodable
    pixel data). The calls wrapped here only read the SEG, so any exception is about the SEG,
    and it fails its study with that reason instead of "internal error".
    """
    try:
        return call()
    except Exception as error:
        logger.debug("highdicom cannot read %s: %r", what, error)
        raise ContourError(f"{what} cannot be read as a Segmentation "
                           f"({type(error).__name__}: {redact_uids(str(error))})") from error


def _referenced_segment(seg: Dataset, frame: int, what: str) -> int:
    item = functional_group_item(seg, frame, "SegmentIdentificationSequence", ContourError)
    if item is None or "ReferencedSegmentNumber" not in item:
        raise ContourError(f"frame {frame + 1} of {what} does not say which segment it belongs to")
    return HeaderReader(f"frame {frame + 1} of {what}", ContourError).integer(item, "ReferencedSegmentNumber")


def _place_volume(volume: _SegmentVolume, ct: CtSeries, what: str) -> list[_Piece]:
    """The set voxels of each slice of a segment's volume, moved onto the CT grid; errors number
    a slice within the SEG's whole stack.

    The volume-to-CT mapping is affine, so if the four corner pixel centres of a slice land
    within GRID_TOLERANCE of CT voxel centres (one slice, unit steps), every pixel does: the
    slice is then pasted as is, which is exactly what nearest-neighbour resampling would give.
    Otherwise ContourError. Empty slices are not placed.
    """
    inside, affine = volume.inside, volume.affine
    rows, columns = inside.shape[1:]
    corner_columns = np.array([0, columns - 1, 0, columns - 1])
    corner_rows = np.array([0, 0, rows - 1, rows - 1])
    pieces = []
    for k in np.flatnonzero(inside.any(axis=(1, 2))):
        cropped = _crop_piece(0, 0, 0, inside[k])
        assert cropped is not None  # the slice has a set pixel
        corners = np.column_stack([np.full(4, k), corner_rows, corner_columns, np.ones(4)])
        ijk = ct.geometry.physical_to_index((corners @ affine.T)[:, :3])
        where = f"slice {volume.first_slice + k + 1} of {volume.stack_slices} of {what}"
        z = nearest_slice_index(ijk[:, 2], ct.geometry.size[2], where)
        x0 = _snap(ijk[:, 0] - corner_columns, where, "pixels") + cropped.x0
        y0 = _snap(ijk[:, 1] - corner_rows, where, "pixels") + cropped.y0
        height, width = cropped.plane.shape
        nx, ny = ct.geometry.size[:2]
        if x0 < 0 or y0 < 0 or x0 + width > nx or y0 + height > ny:
            raise ContourError(f"{where} has segmented pixels outside the CT volume")
        pieces.append(_Piece(z, y0, x0, cropped.plane))
    return pieces


def _segment_mask(
    seg: Dataset, number: int, item: Dataset, offset: tuple[int, int, int], mask: np.ndarray
) -> LesionMask:
    regions = item.get("AnatomicRegionSequence") or []
    read = HeaderReader(f"segment {number} of the SEG", ContourError)
    tracking_uid = _input_uid(read, item, "TrackingUID")
    return LesionMask(
        number=number,
        name=str(item.get("SegmentLabel", "")),
        tracking_uid=tracking_uid,
        tracking_id=(read.text(item, "TrackingID") or None) if tracking_uid else None,
        source=LesionSource.SEG,
        source_sop_class_uid=str(seg.SOPClassUID),
        source_sop_instance_uid=str(seg.SOPInstanceUID),
        offset_zyx=offset,
        mask=mask,
        anatomic_region=_coded_concept(regions[0]) if regions else None,
    )


def _coded_concept(code: Dataset) -> CodedConcept:
    return CodedConcept(
        value=str(code.get("CodeValue") or code.get("LongCodeValue") or code.get("URNCodeValue") or ""),
        scheme=str(code.get("CodingSchemeDesignator", "")),
        meaning=str(code.get("CodeMeaning", "")),
    )
