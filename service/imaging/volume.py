"""CT series -> Hounsfield-unit volume on a validated, regular grid.

Radiomics features are computed on a 3D grid that is assumed to be regular and orthogonal: a
missing slice, a tilted gantry or uneven slice spacing silently distorts shape and texture
features. So instead of "making the best of" such a series, the loader rejects it with a reason
(docs/method.md section 2). Slices are ordered by their position along the slice normal, because
InstanceNumber and file names are not reliable orderings in real archives.

Single-frame CT (one slice per instance) and Enhanced CT (multi-frame, with functional groups)
are read through the same per-frame accessors, so both yield the same volume.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from numpy.typing import DTypeLike
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import pixel_array

from service.dicom_limits import InstanceLimits, check_dataset
from service.errors import InputError, SeriesError
from service.dicom import HeaderReader
from service.model import CtSeries, ImageGeometry
from service.sop_classes import CT_SOP_CLASSES, sop_class_name
from service.transfer_syntaxes import can_decode, transfer_syntax_of

logger = logging.getLogger(__name__)


# Positions are decimal strings (DS); writers round them, commonly to 0.01 mm or finer. Two
# positions closer than this are the same position, and no spacing tolerance can be tighter.
DS_ROUNDING_MM = 0.01
# Direction cosines and pixel spacings of two slices "agree" within this relative tolerance:
# across a 512-pixel row it keeps the accumulated disagreement under 0.05 mm (a twentieth of a
# typical CT pixel), while absorbing the rounding of DS values to six significant digits.
GRID_RELATIVE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class FramePlane:
    """Where one frame (2D pixel grid) sits in patient space.

    `pixel_spacing` keeps the DICOM order: (distance between rows, distance between columns).
    """

    position: np.ndarray  # (x, y, z) of the centre of the first transmitted pixel
    row_direction: np.ndarray  # unit vector along a row, i.e. of increasing column index
    column_direction: np.ndarray  # unit vector along a column, i.e. of increasing row index
    pixel_spacing: tuple[float, float]

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_direction, self.column_direction)

    def pixel_to_physical(self, column: np.ndarray, row: np.ndarray) -> np.ndarray:
        """Pixel centres (column, row indices) -> patient coordinates (N x 3)."""
        column = np.asarray(column, dtype=float)[:, None]
        row = np.asarray(row, dtype=float)[:, None]
        return (
            self.position
            + column * self.pixel_spacing[1] * self.row_direction
            + row * self.pixel_spacing[0] * self.column_direction
        )


def functional_group_item(
    ds: Dataset, frame: int, group: str, error: type[InputError] = SeriesError
) -> Dataset | None:
    """The item of functional group `group` that applies to `frame` (per-frame wins over shared).

    Multi-frame objects (Enhanced CT, SEG) may put any functional group either per frame or in
    the shared sequence; readers must look in both, in this order. A per-frame sequence without
    an item for `frame` raises `error`.
    """
    containers = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None:
        if frame >= len(per_frame):
            raise error(
                f"{instance_name(ds)}: PerFrameFunctionalGroupsSequence has {len(per_frame)} items, "
                f"none for frame {frame + 1}"
            )
        containers.append(per_frame[frame])
    containers.extend((ds.get("SharedFunctionalGroupsSequence") or [])[:1])
    for container in containers:
        sequence = container.get(group)
        if sequence:
            return sequence[0]
    return None


def frame_source(
    ds: Dataset, frame: int, group: str, keyword: str, error: type[InputError] = SeriesError
) -> Dataset:
    """The dataset that holds `keyword` for `frame`: functional group `group`'s item if it has
    `keyword`, else the top level.

    Single-frame images carry e.g. ImagePositionPatient at the top level; multi-frame images
    carry it inside PlanePositionSequence. One accessor serves both.
    """
    item = functional_group_item(ds, frame, group, error)
    return item if item is not None and keyword in item else ds


def frame_reader(ds: Dataset, frame: int, error: type[InputError] = SeriesError) -> HeaderReader:
    """A HeaderReader whose errors name this instance and frame (named only for an error)."""
    return HeaderReader(lambda: f"{instance_name(ds)} frame {frame + 1}", error)


def instance_name(ds: Dataset) -> str:
    """How errors name an instance: by modality and Instance Number, never by its UID (errors
    are shown to users and stored; a UID can identify the patient's study)."""
    number = ds.get("InstanceNumber")
    modality = f"{ds.get('Modality')} " if ds.get("Modality") else ""
    return f"{modality}instance number {number}" if number not in (None, "") else f"a {modality}instance without Instance Number"


def frame_plane(ds: Dataset, frame: int, error: type[InputError] = SeriesError) -> FramePlane:
    """The plane geometry of one frame, with orientation checked to be orthonormal.

    `error` is the exception type to raise on a missing or invalid attribute, so that the CT
    loader reports a SeriesError and the SEG reader a ContourError for the same defect.
    """
    read = frame_reader(ds, frame, error)

    def numbers(group: str, keyword: str, count: int) -> np.ndarray:
        return read.numbers(frame_source(ds, frame, group, keyword, error), keyword, count)

    position = numbers("PlanePositionSequence", "ImagePositionPatient", 3)
    cosines = numbers("PlaneOrientationSequence", "ImageOrientationPatient", 6).reshape(2, 3)
    spacing = numbers("PixelMeasuresSequence", "PixelSpacing", 2)
    norms = np.linalg.norm(cosines, axis=1)
    if np.any(np.abs(norms - 1) > 1e-3) or abs(float(cosines[0] @ cosines[1])) > 1e-3:
        read.fail("ImageOrientationPatient", "is not two orthogonal unit vectors")
    cosines /= norms[:, None]
    if spacing.min() <= 0:
        read.fail("PixelSpacing", "must be positive")
    return FramePlane(
        position=position,
        row_direction=cosines[0],
        column_direction=cosines[1],
        pixel_spacing=(float(spacing[0]), float(spacing[1])),
    )


@dataclass(frozen=True)
class _Slice:
    """One frame of the series, with what is needed to validate and decode it."""

    dataset: Dataset
    frame: int
    plane: FramePlane
    rows: int
    columns: int
    slope: float
    intercept: float

    @property
    def sop_instance_uid(self) -> str:
        return str(self.dataset.SOPInstanceUID)


def load_ct_series(
    datasets: Sequence[Dataset],
    *,
    spacing_tolerance_mm: float | None = None,
    drift_tolerance_mm: float | None = None,
    limits: InstanceLimits = InstanceLimits(),
) -> CtSeries:
    """The HU of one CT series on its validated grid (computed where read: RescaledSlices), or
    raise SeriesError saying why it is unusable.

    spacing_tolerance_mm: how far a slice step may differ from the series' typical step (see
        _uniform_slice_spacing). Default: 1% of that step, but at least DS_ROUNDING_MM. A 1% step error moves a slice by
        0.03 mm on 3 mm slices, far below the 1 mm resampling grid, yet real non-uniform
        series (mixed 2.5/3 mm reconstructions, dropped slices) differ by 10% or more; the
        0.01 mm floor keeps decimal rounding of positions from being taken for non-uniformity.
    drift_tolerance_mm: how far a slice may sit, within its own plane, from the line through the
        first slice along the normal (a sheared stack, as gantry tilt produces). Default: a
        tenth of the smallest pixel spacing, at least DS_ROUNDING_MM: below it, treating the
        stack as orthogonal misplaces no voxel by more than a tenth of its width.
    limits: what an instance may claim (frames, matrix) and must hold (pixel data), checked
        before any per-frame work: these files need not have come through the listener.

    At least two slices are required: the slice spacing is only known from positions
    (SliceThickness is not a spacing) and texture is computed in 3D.
    """
    if not datasets:
        raise SeriesError("no CT instance received")
    for ds in datasets:
        _check_is_ct(ds)
        check_dataset(ds, limits, SeriesError)
    series_uid = _single_value(datasets, "SeriesInstanceUID", "mixed series")
    sop_class_uid = _single_value(datasets, "SOPClassUID", "mixed SOP classes in one series")
    frame_of_reference_uid = _single_value(
        datasets, "FrameOfReferenceUID", "mixed Frames of Reference in one series"
    )
    study_uid = _single_value(datasets, "StudyInstanceUID", "mixed studies in one series")
    slices = [s for ds in datasets for s in _slices_of(ds)]
    if len(slices) < 2:
        raise SeriesError(
            "the series has a single slice: a volume needs at least two slices"
        )
    _check_same_grid(slices)
    _check_no_gantry_tilt(slices)
    ordered, offsets = _sort_along_normal(slices)
    if drift_tolerance_mm is None:
        drift_tolerance_mm = max(0.1 * min(ordered[0].plane.pixel_spacing), DS_ROUNDING_MM)
    _check_no_shear(ordered, drift_tolerance_mm)
    slice_spacing = _uniform_slice_spacing(ordered, offsets, spacing_tolerance_mm)
    first = ordered[0]
    plane = first.plane
    directions = np.column_stack([plane.row_direction, plane.column_direction, plane.normal])
    geometry = ImageGeometry(
        size=(first.columns, first.rows, len(ordered)),
        spacing=(plane.pixel_spacing[1], plane.pixel_spacing[0], slice_spacing),
        origin=(float(plane.position[0]), float(plane.position[1]), float(plane.position[2])),
        direction=tuple(float(v) for v in directions.ravel()),
    )
    return CtSeries(
        hu=_rescaled_slices(ordered),
        geometry=geometry,
        study_instance_uid=study_uid,
        series_instance_uid=series_uid,
        frame_of_reference_uid=frame_of_reference_uid,
        sop_class_uid=sop_class_uid,
        sop_instance_uids=tuple(s.sop_instance_uid for s in ordered),
        kvp=_kvp(first),
    )


def read_ct_directory(path: Path) -> CtSeries:
    """Load the CT series stored as files in `path` (not recursive).

    Files that are not DICOM, and DICOM objects that are not CT images (an RTSTRUCT or SEG
    stored alongside, a DICOMDIR), are skipped, so that an export folder can be read as is.
    Counts, never file names, are reported: file names often carry patient names.
    """
    files = sorted(p for p in Path(path).iterdir() if p.is_file())
    datasets, n_dicom = [], 0
    for file in files:
        try:
            ds = pydicom.dcmread(file)
        except InvalidDicomError:
            continue
        n_dicom += 1
        if ds.get("SOPClassUID") in CT_SOP_CLASSES:
            datasets.append(ds)
    logger.debug("CT directory: %d files, %d DICOM, %d CT", len(files), n_dicom, len(datasets))
    if not datasets:
        raise SeriesError(
            f"no CT image in the directory ({len(files)} files, {n_dicom} of them DICOM)"
        )
    return load_ct_series(datasets)


def _check_is_ct(ds: Dataset) -> None:
    read = HeaderReader("a CT instance", SeriesError)
    read.text(ds, "SOPInstanceUID", required=True)
    sop_class = read.text(ds, "SOPClassUID")
    modality = read.text(ds, "Modality")
    if sop_class not in CT_SOP_CLASSES or modality != "CT":
        raise SeriesError(
            f"{instance_name(ds)} is not a CT image ({sop_class_name(sop_class)}, modality "
            f"{modality}): only CT Image Storage and Enhanced CT Image Storage are accepted"
        )


def _single_value(datasets: Sequence[Dataset], keyword: str, problem: str) -> str:
    """The one value of `keyword` (a UID) across the datasets; several (or none) is a SeriesError
    that counts them (the values themselves go to the DEBUG log: errors carry no UID)."""
    values = sorted({str(ds.get(keyword, "")) for ds in datasets})
    if len(values) > 1:
        logger.debug("%s: %s values %s", problem, keyword, values)
        raise SeriesError(f"{problem}: {len(values)} different {keyword} values")
    if not values[0]:
        raise SeriesError(f"{keyword} is missing")
    return values[0]


def _slices_of(ds: Dataset) -> list[_Slice]:
    """One _Slice per frame; Enhanced CT carries the per-frame attributes in functional groups."""
    frames = HeaderReader(lambda: instance_name(ds), SeriesError).optional_integer(ds, "NumberOfFrames")
    return [_slice(ds, frame) for frame in range(frames or 1)]


def _slice(ds: Dataset, frame: int) -> _Slice:
    read = frame_reader(ds, frame)

    def rescale(keyword: str) -> float:
        """Without it Hounsfield units are unknown, hence required."""
        return read.number(frame_source(ds, frame, "PixelValueTransformationSequence", keyword), keyword)

    return _Slice(
        dataset=ds,
        frame=frame,
        plane=frame_plane(ds, frame),
        rows=read.integer(ds, "Rows"),
        columns=read.integer(ds, "Columns"),
        slope=rescale("RescaleSlope"),
        intercept=rescale("RescaleIntercept"),
    )


def _check_same_grid(slices: list[_Slice]) -> None:
    """All slices must share orientation, matrix size and pixel spacing to stack into one grid."""
    first = slices[0]
    for s in slices[1:]:
        cosines_a = np.concatenate([first.plane.row_direction, first.plane.column_direction])
        cosines_b = np.concatenate([s.plane.row_direction, s.plane.column_direction])
        if np.max(np.abs(cosines_a - cosines_b)) > GRID_RELATIVE_TOLERANCE:
            raise SeriesError(
                f"mixed orientations in the series: {instance_name(s.dataset)} differs from "
                f"{instance_name(first.dataset)}"
            )
        if (s.rows, s.columns) != (first.rows, first.columns):
            raise SeriesError(
                f"differing Rows/Columns in the series: {s.rows}x{s.columns} "
                f"({instance_name(s.dataset)}) vs {first.rows}x{first.columns}"
            )
        spacing_a, spacing_b = np.asarray(first.plane.pixel_spacing), np.asarray(s.plane.pixel_spacing)
        if np.max(np.abs(spacing_a - spacing_b) / spacing_a) > GRID_RELATIVE_TOLERANCE:
            raise SeriesError(
                f"differing PixelSpacing in the series: {s.plane.pixel_spacing} "
                f"({instance_name(s.dataset)}) vs {first.plane.pixel_spacing}"
            )


def _check_no_gantry_tilt(slices: list[_Slice]) -> None:
    """A declared gantry tilt is rejected even if positions look regular (docs/method.md section 2)."""
    for s in slices:
        source = frame_source(s.dataset, s.frame, "CTAcquisitionDetailsSequence", "GantryDetectorTilt")
        tilt = frame_reader(s.dataset, s.frame).optional_number(source, "GantryDetectorTilt")
        if tilt:
            raise SeriesError(
                f"gantry tilt of {tilt:g} degrees ({instance_name(s.dataset)}): "
                "tilted acquisitions are not supported"
            )


def _sort_along_normal(slices: list[_Slice]) -> tuple[list[_Slice], np.ndarray]:
    """Slices ordered by position along the normal, and those positions (mm)."""
    normal = slices[0].plane.normal
    offsets = np.array([float(s.plane.position @ normal) for s in slices])
    order = np.argsort(offsets, kind="stable")
    return [slices[i] for i in order], offsets[order]


def _check_no_shear(ordered: list[_Slice], tolerance_mm: float) -> None:
    """Every slice must lie on the line through the first one along the normal."""
    normal = ordered[0].plane.normal
    for s in ordered[1:]:
        step = s.plane.position - ordered[0].plane.position
        drift = float(np.linalg.norm(step - (step @ normal) * normal))
        if drift > tolerance_mm:
            raise SeriesError(
                f"slice positions are not along the slice normal (sheared stack, as from gantry "
                f"tilt): {instance_name(s.dataset)} is offset {drift:.3f} mm within its plane "
                f"(tolerance {tolerance_mm:.3f} mm)"
            )


def _uniform_slice_spacing(
    ordered: list[_Slice], offsets: np.ndarray, tolerance_mm: float | None
) -> float:
    """The slice spacing, after rejecting duplicate positions, gaps and uneven steps.

    The reference step is the median of the steps shorter than 1.5 times the smallest one. The
    median is not thrown off by one displaced slice (which makes one step short and the next
    long), and leaving long steps out keeps gaps from pulling it up: in a short series with a
    gap (steps 3.27 and 6.54 mm) the plain median is no step of the series at all.
    """
    steps = np.diff(offsets)
    duplicates = np.flatnonzero(steps < DS_ROUNDING_MM)
    if duplicates.size:
        i = int(duplicates[0])
        raise SeriesError(
            f"duplicate slice position {offsets[i]:.2f} mm along the slice normal "
            f"({instance_name(ordered[i].dataset)} and {instance_name(ordered[i + 1].dataset)})"
        )
    reference = float(np.median(steps[steps < 1.5 * steps.min()]))
    tolerance = tolerance_mm if tolerance_mm is not None else max(0.01 * reference, DS_ROUNDING_MM)
    multiples = np.maximum(np.rint(steps / reference), 1)
    uneven = np.flatnonzero(np.abs(steps - multiples * reference) > tolerance * multiples)
    if uneven.size:
        i = int(uneven[0])
        raise SeriesError(
            f"non-uniform slice spacing: step of {steps[i]:.3f} mm after position {offsets[i]:.2f} mm "
            f"along the slice normal, vs a typical {reference:.3f} mm (tolerance {tolerance:.3f} mm)"
        )
    gaps = np.flatnonzero(multiples > 1)
    if gaps.size:
        described = "; ".join(
            f"{int(multiples[i]) - 1} missing after position {offsets[i]:.2f} mm" for i in gaps
        )
        raise SeriesError(
            f"missing slices along the slice normal (spacing {reference:.3f} mm): {described}"
        )
    return float((offsets[-1] - offsets[0]) / (len(offsets) - 1))


class RescaledSlices:
    """The series' Hounsfield units (service.model.HuRegions), rescaled from the stored values
    of the slices, rows and columns each read asks for.

    Why not the whole volume: its readers are the lesion crops (3% of the voxels of a 10-lesion,
    300-slice study) and one key slice per lesion, and building the whole float32 volume for
    them (314 MB for 300 slices of 512 x 512) took 0.75 s of a 1.6 s input stage in the
    service, most of it faulting in that much fresh memory. The stored values are decoded when
    the series is loaded (a view of the pixel data for uncompressed frames whose stored bits
    fill their allocation), so damaged pixel data is still an error of loading. Each read
    applies its slices' own rescale in double precision and stores float32, as the whole
    volume was built: values are identical.
    """

    dtype = np.dtype(np.float32)

    def __init__(self, frames: Sequence[np.ndarray], slopes: Sequence[float], intercepts: Sequence[float]):
        self._frames = list(frames)  # one 2D array of stored values per slice, in z order
        self._slopes = list(slopes)
        self._intercepts = list(intercepts)
        rows, columns = self._frames[0].shape
        self.shape = (len(self._frames), rows, columns)

    def __getitem__(self, key: int | slice | tuple[int | slice, ...]) -> np.ndarray:
        keys = key if isinstance(key, tuple) else (key,)
        if len(keys) > 3 or not all(_is_index(k) for k in keys):
            raise IndexError(f"HU regions are indexed by up to three integers or slices, not {key!r}")
        for axis, (k, n) in enumerate(zip(keys, self.shape)):  # before any slice is read, as numpy
            if not isinstance(k, slice) and not -n <= k < n:
                raise IndexError(f"index {k} is out of bounds for axis {axis} with size {n}")
        chosen = range(self.shape[0])[keys[0] if keys else slice(None)]  # an int, or a range of them
        if isinstance(chosen, range):
            return self._rescaled(chosen, keys[1:])
        return self._rescaled(range(chosen, chosen + 1), keys[1:])[0]

    def __array__(self, dtype: DTypeLike | None = None, copy: bool | None = None) -> np.ndarray:
        if copy is False:
            raise ValueError("the HU volume is computed when read: it cannot be given without a copy")
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def _rescaled(self, slices: range, plane: tuple[int | slice, ...]) -> np.ndarray:
        kept = [len(range(n)[k]) for n, k in zip(self.shape[1:], plane) if isinstance(k, slice)]
        shape = (*kept, *self.shape[1 + len(plane):])
        out = np.empty((len(slices), *shape), dtype=np.float32)
        rescaled = np.empty(shape, dtype=np.float64)
        for k, z in enumerate(slices):
            np.multiply(self._frames[z][plane], self._slopes[z], out=rescaled)
            rescaled += self._intercepts[z]
            out[k] = rescaled
        return out


def _is_index(key: object) -> bool:
    """An integer or a slice; not a bool, which numpy takes for a mask, not an index."""
    return isinstance(key, (int, np.integer, slice)) and not isinstance(key, (bool, np.bool_))


def _rescaled_slices(ordered: list[_Slice]) -> RescaledSlices:
    """The ordered slices' stored values, each instance decoded once (an Enhanced CT holds every
    frame), with each slice's own rescale (it may differ per frame)."""
    decoded: dict[int, np.ndarray] = {}
    for s in ordered:
        if id(s.dataset) not in decoded:
            decoded[id(s.dataset)] = decoded_frames(s.dataset, s.rows, s.columns)
    return RescaledSlices([decoded[id(s.dataset)][s.frame] for s in ordered],
                          [s.slope for s in ordered], [s.intercept for s in ordered])


def decoded_frames(ds: Dataset, rows: int, columns: int) -> np.ndarray:
    """All frames of an instance, (frames, rows, columns); damaged or truncated pixel data, or
    pixel attributes that do not describe it, raise SeriesError naming the instance, and
    compressed pixel data its transfer syntax (a codec's own error rarely says which codec).

    Frames are only read (RescaledSlices rescales them), so uncompressed frames whose stored
    bits fill their allocation are a read-only view of the pixel data as read (pydicom's `view_only`):
    the writeable copy Dataset.pixel_array makes, and keeps on the dataset, took a third of a
    300-slice series' decoding in a fresh process. Frames with unused high bits (12 of 16) are
    copied by pydicom to clear those bits, so no view is asked for them (pydicom would warn for
    each); compressed frames are decoded into new arrays.
    """
    try:
        view_only = ds.get("BitsStored") == ds.get("BitsAllocated")
        return pixel_array(ds, view_only=view_only).reshape(-1, rows, columns)
    except Exception as exc:  # pydicom/numpy raise several types for bad pixel data
        raise SeriesError(f"{instance_name(ds)}: pixel data{_compression(ds)} cannot be decoded "
                    f"({type(exc).__name__}: {exc})") from exc


def _compression(ds: Dataset) -> str:
    """' in <transfer syntax>' for compressed pixel data (and whether a decoder is installed)."""
    syntax = transfer_syntax_of(ds)
    if syntax is None or not syntax.is_compressed:
        return ""
    decoder = "" if can_decode(syntax) else ", for which no decoder is installed,"
    return f" in {syntax.name} ({syntax}){decoder}"


def _kvp(first: _Slice) -> float | None:
    """KVP (0018,0060); Enhanced CT keeps it in the CT X-Ray Details functional group."""
    source = frame_source(first.dataset, first.frame, "CTXRayDetailsSequence", "KVP")
    return frame_reader(first.dataset, first.frame).optional_number(source, "KVP")
