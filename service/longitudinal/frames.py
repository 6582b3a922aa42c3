"""Bringing prior positions into the current frame of reference, and deciding coverage.

The mapping itself (a Spatial Registration object, or a rigid registration of the prior CT to
the current one) is found elsewhere; here it is only a 4x4 matrix in patient coordinates (LPS,
mm) that takes a prior point to the current frame, as DICOM's Frame of Reference Transformation
Matrix does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.model import ImageGeometry, Vector3

SAME_FRAME = "same frame of reference"


@dataclass(frozen=True)
class FrameMapping:
    """prior patient coordinates -> current patient coordinates, and how that was found.

    `matrix` is the row-major 4x4 homogeneous matrix (16 numbers); `registration` names its
    origin for the outputs ("same frame of reference", "spatial registration <UID>", "rigid
    registration, metric -0.42").
    """

    matrix: tuple[float, ...]
    registration: str

    def __post_init__(self) -> None:
        m = np.asarray(self.matrix, dtype=float)
        if m.shape != (16,) or not np.all(np.isfinite(m)):
            raise ValueError("a frame mapping is 16 finite numbers (a row-major 4x4 matrix)")
        m = m.reshape(4, 4)
        if not np.allclose(m[3], (0.0, 0.0, 0.0, 1.0)) or abs(np.linalg.det(m[:3, :3])) < 1e-9:
            raise ValueError("a frame mapping must be an invertible affine matrix (last row 0 0 0 1)")

    @classmethod
    def identity(cls) -> FrameMapping:
        return cls(tuple(np.eye(4).ravel().tolist()), SAME_FRAME)

    def _homogeneous(self) -> np.ndarray:
        return np.asarray(self.matrix, dtype=float).reshape(4, 4)

    def apply(self, point: Vector3 | np.ndarray) -> np.ndarray:
        """A prior point in the current frame."""
        m = self._homogeneous()
        return np.asarray(m[:3, :3] @ np.asarray(point, dtype=float) + m[:3, 3], dtype=float)

    def apply_inverse(self, point: Vector3 | np.ndarray) -> np.ndarray:
        """A current point in the prior frame (to ask whether the prior scan covered it)."""
        m = self._homogeneous()
        return np.asarray(np.linalg.solve(m[:3, :3], np.asarray(point, dtype=float) - m[:3, 3]), dtype=float)


def inside_extent(extent: ImageGeometry, point: np.ndarray, margin_mm: float) -> bool:
    """True when `point` lies in the scanned box at least `margin_mm` away from every face.

    The box is the voxel grid's outer boundary (half a voxel beyond the first and last centres).
    A lesion near an edge may be cut off or missed by the other scan, so only positions well
    inside count as covered (docs/method.md 5.1, unmatched lesions: margin >= 10 mm).
    """
    ijk = extent.physical_to_index(np.asarray(point, dtype=float).reshape(1, 3))[0]
    margin = margin_mm / np.asarray(extent.spacing, dtype=float)
    low = -0.5 + margin
    high = np.asarray(extent.size, dtype=float) - 0.5 - margin
    return bool(np.all(ijk >= low) and np.all(ijk <= high))
