"""Key images of the tumour-board summary: for each lesion, the axial CT slice where its contour
is largest, with the contour and the peritumoral ring the score was computed on.

Why the slice of largest area rather than the centroid's: it is the
slice a reader would measure on, and it always holds the lesion, where a concave lesion's
centroid may not. Why the ring too: the CD8 score reads the ring as much as the core (method.md
section 2), so a board seeing a high score next to a vessel or the pleura should see what the
ring took in. The ring is the scoring's own definition (service.scoring.ring) on the CT's grid,
not the resampled grid the scorer uses: close enough to show, and exactly what the contour
covers on the slice shown.

The output is plain arrays (the field of view in HU, the lesion and ring masks, and an RGB
overlay), so any page renderer can place it and a test can check a pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from service.model import CtSeries, LesionMask, LocationClass
from service.scoring.ring import ring_mask

CONTOUR_RGB = (255, 255, 0)
"""Yellow: the lesion's contour (cyan is kept for a prior's contour)."""
RING_RGB = (255, 0, 255)
"""Magenta: the peritumoral ring, blended over the CT so the tissue it covers stays visible."""
RING_OPACITY = 0.45
FIELD_MARGIN_MM = 15.0
"""Context around the lesion's bounding box on the key slice, beyond the ring."""


@dataclass(frozen=True)
class Window:
    """A CT display window in HU."""

    center: float
    width: float


LUNG_WINDOW = Window(-600.0, 1500.0)
SOFT_TISSUE_WINDOW = Window(40.0, 400.0)
"""README, "Tumour-board summary": lung W 1500 / L -600; soft tissue and liver W 400 / L 40."""


def window_for(location: LocationClass) -> Window:
    return LUNG_WINDOW if location == LocationClass.LUNG else SOFT_TISSUE_WINDOW


@dataclass(frozen=True, eq=False)
class KeyImage:
    """One lesion's key slice, cut to a field of view around the lesion.

    `slice_index` is the slice's index in the CT volume (z), `slice_z_mm` its position in
    patient coordinates; `first_row_column` is where the field of view starts in that slice.
    `hu`, `lesion` and `ring` are (rows, columns) arrays of the field of view.
    """

    lesion_number: int
    source_sop_instance_uid: str
    slice_index: int
    slice_z_mm: float
    first_row_column: tuple[int, int]
    pixel_spacing_mm: tuple[float, float]  # (row, column)
    hu: np.ndarray
    lesion: np.ndarray
    ring: np.ndarray


def key_image(ct: CtSeries, lesion: LesionMask, ring_width_mm: float) -> KeyImage:
    """The key slice of `lesion` on `ct`, with the ring of `ring_width_mm` (the scoring setting)."""
    areas = lesion.mask.sum(axis=(1, 2))
    if not areas.any():
        raise ValueError(f"lesion {lesion.number} has no voxel: no key slice")
    local_z = int(np.argmax(areas))  # the first slice of largest area: deterministic on ties
    sx, sy, sz = (float(s) for s in ct.geometry.spacing)
    spacing_zyx = (sz, sy, sx)
    pad = [math.ceil(ring_width_mm / s) + 1 for s in spacing_zyx]
    core, start = _padded(lesion, pad)
    ring = ring_mask(core, spacing_zyx, ring_width_mm)
    z = lesion.offset_zyx[0] + local_z
    rows, columns = np.nonzero(lesion.mask[local_z])
    margin = [math.ceil((ring_width_mm + FIELD_MARGIN_MM) / s) for s in spacing_zyx[1:]]
    first = [max(0, lesion.offset_zyx[1] + int(rows.min()) - margin[0]),
             max(0, lesion.offset_zyx[2] + int(columns.min()) - margin[1])]
    stop = [min(ct.hu.shape[1], lesion.offset_zyx[1] + int(rows.max()) + 1 + margin[0]),
            min(ct.hu.shape[2], lesion.offset_zyx[2] + int(columns.max()) + 1 + margin[1])]
    field = (slice(first[0], stop[0]), slice(first[1], stop[1]))
    centre = ct.geometry.index_to_physical(np.asarray([[(first[1] + stop[1]) / 2, (first[0] + stop[0]) / 2, z]]))
    return KeyImage(
        lesion_number=lesion.number, source_sop_instance_uid=lesion.source_sop_instance_uid,
        slice_index=z, slice_z_mm=float(centre[0, 2]), first_row_column=(first[0], first[1]),
        pixel_spacing_mm=(spacing_zyx[1], spacing_zyx[2]),
        hu=np.array(ct.hu[(z, *field)], dtype=np.float32),
        lesion=_on_slice(core, start, z, field, ct.hu.shape),
        ring=_on_slice(ring, start, z, field, ct.hu.shape),
    )


def overlay_rgb(image: KeyImage, window: Window) -> np.ndarray:
    """(rows, columns, 3) uint8: the windowed CT, the ring blended in, the contour on top.

    The contour is the lesion's edge pixels (lesion pixels with an edge-neighbour outside it),
    so it lies on the lesion, where the board looks for it, and never hides the ring outside.
    """
    low = window.center - window.width / 2
    grey = np.clip((image.hu - low) / window.width, 0.0, 1.0) * 255.0
    rgb = np.repeat(grey[..., np.newaxis], 3, axis=2)
    rgb[image.ring] = (1 - RING_OPACITY) * rgb[image.ring] + RING_OPACITY * np.asarray(RING_RGB, dtype=float)
    edge = image.lesion & ~ndimage.binary_erosion(image.lesion, border_value=0)
    rgb[edge] = CONTOUR_RGB
    return np.rint(rgb).astype(np.uint8)


def _padded(lesion: LesionMask, pad: list[int]) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The lesion's mask with room for the ring on every side; and where it starts in the CT
    volume (it may start before voxel 0: the ring is cut to the volume when placed)."""
    core = np.pad(lesion.mask.astype(bool), [(p, p) for p in pad])
    start = tuple(o - p for o, p in zip(lesion.offset_zyx, pad))
    return core, (start[0], start[1], start[2])


def _on_slice(mask: np.ndarray, start: tuple[int, int, int], z: int, field: tuple[slice, slice],
              volume_shape: tuple[int, ...]) -> np.ndarray:
    """The slice `z` of a mask that starts at voxel `start`, cut to the field of view."""
    out = np.zeros((field[0].stop - field[0].start, field[1].stop - field[1].start), dtype=bool)
    plane = mask[z - start[0]]
    rows = slice(max(field[0].start, start[1]), min(field[0].stop, start[1] + plane.shape[0], volume_shape[1]))
    columns = slice(max(field[1].start, start[2]), min(field[1].stop, start[2] + plane.shape[1], volume_shape[2]))
    if rows.start < rows.stop and columns.start < columns.stop:
        out[rows.start - field[0].start:rows.stop - field[0].start,
            columns.start - field[1].start:columns.stop - field[1].start] = \
            plane[rows.start - start[1]:rows.stop - start[1], columns.start - start[2]:columns.stop - start[2]]
    return out
