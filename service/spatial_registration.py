"""A DICOM Spatial Registration object read as the prior -> current frame mapping.

Preferred over image registration (service.prior_frames): whoever made it (a PACS, a
planning system, a radiologist) chose the alignment, and reading it costs nothing. Two frames
are related when both reach the object's registered frame (service.registration_object): prior
-> registered -> current. The listener refuses a malformed object at C-STORE; one given to
`score` in its --ct directory that does not read is skipped here like one relating other
frames. Deformable registrations (another SOP class) are not read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset

from service.errors import InputError
from service.longitudinal.frames import FrameMapping
from service.registration_object import registered_frames
from service.sop_classes import SPATIAL_REGISTRATION


def registration_mapping(objects: Sequence[Dataset], prior_frame: str, current_frame: str) -> FrameMapping | None:
    """The first Spatial Registration object (in UID order, for determinism) that relates the two
    frames, as prior -> current; None when none does or none is readable."""
    ordered = sorted((ds for ds in objects if str(ds.get("SOPClassUID", "")) == SPATIAL_REGISTRATION),
                     key=lambda ds: str(ds.get("SOPInstanceUID", "")))
    for ds in ordered:
        try:
            frames = registered_frames(ds)
        except InputError:
            continue
        if prior_frame in frames and current_frame in frames:
            matrix = np.linalg.solve(frames[current_frame], frames[prior_frame])  # current^-1 @ prior
            return FrameMapping(tuple(matrix.ravel().tolist()), f"spatial registration {ds.SOPInstanceUID}")
    return None
