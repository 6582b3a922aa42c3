"""What a DICOM Spatial Registration object says: each Frame of Reference it relates, with the
4x4 matrix taking that frame's patient coordinates into the object's own registered frame.

In the foundation because two layers read it the same way: the listener (ingest) refuses a
malformed object at C-STORE, while its sender still holds it, and the follow-up
(service.spatial_registration) turns two frames' matrices into a prior -> current mapping. Each
item of the Registration Sequence names a frame and one Matrix Registration item whose Matrix
Sequence is applied in order (PS3.3 C.20.2); the object's own frame needs no item of its own.
Errors name the item and the attribute, never a value.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from service.dicom import HeaderReader
from service.errors import InputError

MATRIX_TYPES = frozenset({"RIGID", "RIGID_SCALE", "AFFINE"})


def registered_frames(ds: Dataset) -> dict[str, np.ndarray]:
    """Frame of Reference UID -> the 4x4 into the registered frame (the first item of a frame
    counts); the object's own frame maps by identity unless an item says otherwise. InputError
    names what is wrong: a missing frame, not one Matrix Registration item, an empty Matrix
    Sequence, a matrix type we do not read (deformable registrations are another SOP class), a
    matrix not of 16 finite numbers, or a combined matrix that is not affine or is singular."""
    reader = HeaderReader("Spatial Registration", InputError)
    own_frame = reader.text(ds, "FrameOfReferenceUID", required=True)
    items = _items(reader, ds, "RegistrationSequence")
    if not items:
        reader.fail("RegistrationSequence", "is missing or empty")
    frames: dict[str, np.ndarray] = {}
    for number, item in enumerate(items, start=1):
        item_reader = HeaderReader(f"Spatial Registration item {number}", InputError)
        frame = item_reader.text(item, "FrameOfReferenceUID", required=True)
        frames.setdefault(frame, _combined(item_reader, item))
    frames.setdefault(own_frame, np.eye(4))
    return frames


def _combined(reader: HeaderReader, item: Dataset) -> np.ndarray:
    """The item's Matrix Sequence multiplied in order (the first matrix applied first)."""
    registrations = _items(reader, item, "MatrixRegistrationSequence")
    if len(registrations) != 1:
        reader.fail("MatrixRegistrationSequence", f"has {len(registrations)} items, expected 1")
    entries = _items(reader, registrations[0], "MatrixSequence")
    if not entries:
        reader.fail("MatrixSequence", "is missing or empty")
    combined = np.eye(4)
    for entry in entries:
        if reader.text(entry, "FrameOfReferenceTransformationMatrixType") not in MATRIX_TYPES:
            reader.fail("FrameOfReferenceTransformationMatrixType", f"is not one of {', '.join(sorted(MATRIX_TYPES))}")
        matrix = reader.numbers(entry, "FrameOfReferenceTransformationMatrix", count=16).reshape(4, 4)
        combined = matrix @ combined
    if not np.isfinite(combined).all():
        reader.fail("FrameOfReferenceTransformationMatrix", "values overflow when combined")
    if not np.allclose(combined[3], (0, 0, 0, 1)):
        reader.fail("FrameOfReferenceTransformationMatrix", "is not affine (last row is not 0 0 0 1)")
    if abs(np.linalg.det(combined[:3, :3])) < 1e-9:
        reader.fail("FrameOfReferenceTransformationMatrix", "is singular")
    return combined


def _items(reader: HeaderReader, ds: Dataset, keyword: str) -> list[Dataset]:
    """A sequence's items, [] when it is absent or empty."""
    values = reader.values(ds, keyword)
    if values and (len(values) != 1 or not isinstance(values[0], Sequence)):
        reader.fail(keyword, "is not a sequence")
    return list(values[0]) if values else []
