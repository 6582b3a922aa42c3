"""What one of our SRs says of the CT it measured: its extent and acquisition, from the image library.

A later study needs both (docs/method.md 5.1): the extent decides whether an
unmatched lesion is new or disappeared or merely outside the other scan, and kVp, kernel and
slice thickness whether radiomic deltas are comparable. The SR's image library (TID 1600)
already describes the CT series' first two and last images with standard descriptors (TID
1602/1604: rows, columns, pixel spacing, slice thickness, position and orientation), so the
extent is rebuilt from them rather than restated; the builder adds kVp and kernel to the library group (service.outputs.sr).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as dicom_codes

from service.model import ImageGeometry
from service.outputs import codes

_DCM = dicom_codes.DCM
_POSITION = (_DCM.ImagePositionPatientX, _DCM.ImagePositionPatientY, _DCM.ImagePositionPatientZ)
_ROW = (_DCM.ImageOrientationPatientRowX, _DCM.ImageOrientationPatientRowY, _DCM.ImageOrientationPatientRowZ)
_COLUMN = (_DCM.ImageOrientationPatientColumnX, _DCM.ImageOrientationPatientColumnY,
           _DCM.ImageOrientationPatientColumnZ)


@dataclass(frozen=True)
class ScannedCt:
    """The CT of a prior SR as its image library describes it; None: not stated."""

    extent: ImageGeometry | None
    kvp: float | None
    convolution_kernel: str | None
    slice_thickness_mm: float | None


def _named(item: Dataset, code: object) -> bool:
    name = item.get("ConceptNameCodeSequence")
    return bool(name) and name[0].CodeValue == getattr(code, "value") and (
        name[0].CodingSchemeDesignator == getattr(code, "scheme_designator"))


def _children(item: Dataset, code: object) -> Iterator[Dataset]:
    return (child for child in item.get("ContentSequence") or [] if _named(child, code))


def _number(item: Dataset, code: object) -> float | None:
    found = next(_children(item, code), None)
    return None if found is None else float(found.MeasuredValueSequence[0].NumericValue)


def _frames(group: Dataset) -> set[str]:
    """The Frame of Reference UIDs a library group states, for itself or per image (highdicom
    states it per image)."""
    items = [group, *(image for image in group.get("ContentSequence") or [] if image.ValueType == "IMAGE")]
    return {str(uid.UID) for item in items for uid in _children(item, _DCM.FrameOfReferenceUID)}


def read_scanned_ct(sr: Dataset, frame_of_reference_uid: str | None) -> ScannedCt:
    """The CT of the image library group in `frame_of_reference_uid` (the lesions' frame; None,
    a report without lesions: its first group)."""
    groups = [group for library in _children(sr, _DCM.ImageLibrary)
              for group in _children(library, _DCM.ImageLibraryGroup)
              if frame_of_reference_uid is None or frame_of_reference_uid in _frames(group)]
    if not groups:
        return ScannedCt(None, None, None, None)
    group = groups[0]
    kernel = next((str(item.TextValue) for item in _children(group, codes.CONVOLUTION_KERNEL)), None)
    images = [image for image in group.get("ContentSequence") or [] if image.ValueType == "IMAGE"]
    thickness = next((t for t in (_number(image, _DCM.SliceThickness) for image in images) if t is not None), None)
    return ScannedCt(_extent(images, thickness), _number(group, codes.KVP), kernel, thickness)


def _extent(images: list[Dataset], thickness_mm: float | None) -> ImageGeometry | None:
    """The voxel grid the images span: in-plane from rows, columns and spacing; through-plane
    from the positions along the slice normal: evenly spaced slices, as a CT series is read, at
    the smallest gap listed, as many as fill the span (our SRs list each series' first two and
    last images; older ones list every image: both give the same grid). One slice is as deep as
    it is thick.
    None when a descriptor is missing or the slices do not share one orientation."""
    described = [(np.array([_number(image, code) for code in _POSITION], dtype=float),  # None -> NaN
                  np.array([_number(image, code) for code in (*_ROW, *_COLUMN)], dtype=float),
                  _number(image, _DCM.PixelDataRows), _number(image, _DCM.PixelDataColumns),
                  _number(image, _DCM.HorizontalPixelSpacing), _number(image, _DCM.VerticalPixelSpacing))
                 for image in images]
    if not described or any(np.isnan(position).any() or np.isnan(orientation).any()
                            for position, orientation, *_ in described):
        return None
    orientation = described[0][1]
    if any(not np.allclose(o, orientation) or (r, c, h, v) != described[0][2:]
           for _, o, r, c, h, v in described):
        return None
    row, column = orientation[:3], orientation[3:]
    normal = np.cross(row, column)
    ordered = sorted((float(position @ normal), tuple(position)) for position, *_ in described)
    rows, columns, horizontal, vertical = described[0][2:]
    if None in (rows, columns, horizontal, vertical):
        return None
    span = ordered[-1][0] - ordered[0][0]
    gaps = [b[0] - a[0] for a, b in zip(ordered, ordered[1:]) if b[0] - a[0] > 0]
    slice_spacing = min(gaps) if gaps else (thickness_mm or 1.0)
    slices = round(span / slice_spacing) + 1 if gaps else 1
    direction = np.column_stack([row, column, normal]).ravel()
    x, y, z = ordered[0][1]
    return ImageGeometry((int(columns), int(rows), slices),  # type: ignore[arg-type]
                         (float(horizontal), float(vertical), slice_spacing),  # type: ignore[arg-type]
                         (x, y, z), tuple(float(v) for v in direction))
