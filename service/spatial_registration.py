"""A DICOM Spatial Registration object read as the prior -> current frame mapping.

Preferred over image registration (followup.md 2.3 step 3b): whoever made it (a PACS, a
planning system, a radiologist) chose the alignment, and reading it costs nothing. Each item
of the Registration Sequence names a Frame of Reference and the matrices that take its patient
coordinates into the object's own registered frame (PS3.3 C.20.2: applied in sequence order); a
frame equal to the object's Frame of Reference UID with no item of its own needs none. Two frames
are related when both reach the registered frame: prior -> registered -> current. Deformable
registrations (another SOP class) are not read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset

from service.longitudinal.frames import FrameMapping
from service.sop_classes import SPATIAL_REGISTRATION

MATRIX_TYPES = frozenset({"RIGID", "RIGID_SCALE", "AFFINE"})


def registration_mapping(objects: Sequence[Dataset], prior_frame: str, current_frame: str) -> FrameMapping | None:
    """The first Spatial Registration object (in UID order, for determinism) that relates the two
    frames, as prior -> current; None when none does or none is readable."""
    ordered = sorted((ds for ds in objects if str(ds.get("SOPClassUID", "")) == SPATIAL_REGISTRATION),
                     key=lambda ds: str(ds.get("SOPInstanceUID", "")))
    for ds in ordered:
        to_registered = {frame: _to_registered(ds, frame) for frame in (prior_frame, current_frame)}
        prior, current = to_registered[prior_frame], to_registered[current_frame]
        if prior is not None and current is not None:
            matrix = np.linalg.solve(current, prior)  # current^-1 @ prior
            return FrameMapping(tuple(matrix.ravel().tolist()), f"spatial registration {ds.SOPInstanceUID}")
    return None


def _to_registered(ds: Dataset, frame: str) -> np.ndarray | None:
    """The 4x4 taking `frame` to the object's registered frame; None when the object does not
    relate it (or describes it in a way we do not read)."""
    items = [item for item in ds.get("RegistrationSequence", []) if str(item.get("FrameOfReferenceUID", "")) == frame]
    if not items:
        return np.eye(4) if str(ds.get("FrameOfReferenceUID", "")) == frame else None
    combined = np.eye(4)
    try:
        (registration,) = items[0].MatrixRegistrationSequence
        for entry in registration.MatrixSequence:
            if str(entry.get("FrameOfReferenceTransformationMatrixType", "")) not in MATRIX_TYPES:
                return None
            matrix = np.asarray([float(v) for v in entry.FrameOfReferenceTransformationMatrix]).reshape(4, 4)
            combined = matrix @ combined
    except (AttributeError, TypeError, ValueError):
        return None
    if not np.all(np.isfinite(combined)) or not np.allclose(combined[3], (0, 0, 0, 1)) or \
            abs(np.linalg.det(combined[:3, :3])) < 1e-9:
        return None
    return combined
