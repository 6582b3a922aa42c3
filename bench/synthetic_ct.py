"""A synthetic chest/abdomen CT with lesions, built from the service's own types.

The scoring benchmark needs a study of clinical size and realistic content. Real data would do,
but it cannot ship with the repository, so this builds one with a seeded RNG. What matters for
timing is what pyradiomics' cost depends on: the number of voxels in the core and the ring, the
number of grey levels they span (tissue contrast, noise, air and bone next to a lesion) and how
runs and zones break up (correlated noise, heterogeneous lesions). So the phantom has tissues at
CT numbers, noise correlated like a reconstruction kernel's, a blurred point-spread and lesions
with lumpy borders and necrotic centres, placed in soft tissue, liver, lung and mediastinal fat.

Anatomy is analytic (ellipses and ellipsoids) in coordinates normalised to the field of view, so
a smaller `--quick` volume keeps the same layout. Arrays are float32 (z, y, x); geometry is
0.7 x 0.7 x 1.0 mm (x, y, z).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from service.model import CtSeries, ImageGeometry, LesionMask

SPACING_XYZ = (0.7, 0.7, 1.0)
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
_UID_ROOT = "1.2.826.0.1.3680043.8.498.4242"

# Tissue labels and their mean CT numbers (HU).
AIR, FAT, MUSCLE, LIVER, MEDIASTINUM, NODE, LUNG, BONE, CORTEX = range(9)
_MEAN_HU = np.array([-1000.0, -100.0, 40.0, 60.0, -90.0, 35.0, -850.0, 400.0, 950.0], dtype=np.float32)

# Where lesions go, largest first: every region appears once in the first four (the --quick set).
REGION_CYCLE = ("liver", "soft_tissue", "lung", "node")
_REGION_LABELS = {"liver": (LIVER,), "soft_tissue": (MUSCLE,), "lung": (LUNG,), "node": (MEDIASTINUM, NODE)}
# Fraction of the lesion's radius that must lie inside its region: an enlarged node may bulge.
_FIT = {"liver": 1.0, "soft_tissue": 1.0, "lung": 1.0, "node": 0.6}
# ROI names that the service's location rules map to adenopathy / lung / liver / other.
_NAMES = {"liver": "liver met", "soft_tissue": "abdominal wall mass", "lung": "lung nodule", "node": "LN mediastinal"}
_RING_CLEARANCE_MM = 8.0  # gap kept between lesions, so no ring reaches into another lesion


@dataclass(frozen=True)
class SyntheticStudy:
    """The CT, its lesions, and where each lesion was placed (for the report)."""

    ct: CtSeries
    lesions: list[LesionMask]
    regions: list[str]  # per lesion: liver | soft_tissue | lung | node


def _uid(*parts: int) -> str:
    return ".".join((_UID_ROOT, *map(str, parts)))


def _normalised_axes(shape_zyx: tuple[int, int, int], step: tuple[int, int, int] = (1, 1, 1)) -> tuple[np.ndarray, ...]:
    """(w, v, u) in [-1, 1] across the field of view, broadcastable (z, y, x); `step` subsamples."""
    axes = []
    for axis, (n, s) in enumerate(zip(shape_zyx, step)):
        values = ((np.arange(0, n, s) - (n - 1) / 2.0) / (n / 2.0)).astype(np.float32)
        view = [1, 1, 1]
        view[axis] = values.size
        axes.append(values.reshape(view))
    return tuple(axes)


def _inside(w: np.ndarray, v: np.ndarray, u: np.ndarray, centre: tuple[float, float, float],
            semi: tuple[float, float, float]) -> np.ndarray:
    """Ellipsoid test in normalised (u, v, w); an infinite w semi-axis makes it a cylinder."""
    total = ((u - centre[0]) / semi[0]) ** 2 + ((v - centre[1]) / semi[1]) ** 2
    if math.isfinite(semi[2]):
        total = total + ((w - centre[2]) / semi[2]) ** 2
    return total <= 1.0


def anatomy_labels(shape_zyx: tuple[int, int, int], step: tuple[int, int, int] = (1, 1, 1)) -> np.ndarray:
    """Tissue label per voxel; later structures paint over earlier ones, as organs abut.

    The nodes come from their own fixed seed, so the ~3 mm placement grid and the full grid
    agree on where they are.
    """
    w, v, u = _normalised_axes(shape_zyx, step)
    labels = np.zeros(np.broadcast_shapes(w.shape, v.shape, u.shape), dtype=np.uint8)
    body = (0.0, 0.05, 0.0)
    labels[np.broadcast_to(_inside(w, v, u, body, (0.92, 0.64, math.inf)), labels.shape)] = FAT
    labels[np.broadcast_to(_inside(w, v, u, body, (0.84, 0.56, math.inf)), labels.shape)] = MUSCLE
    labels[_inside(w, v, u, (-0.40, 0.05, -0.40), (0.42, 0.45, 0.45))] = LIVER
    labels[_inside(w, v, u, (0.0, -0.02, 0.45), (0.20, 0.30, 0.55))] = MEDIASTINUM
    node_rng = np.random.default_rng(11)
    for _ in range(6):  # small normal nodes scattered in the mediastinal fat
        centre = (node_rng.uniform(-0.08, 0.08), node_rng.uniform(-0.2, 0.15), node_rng.uniform(0.1, 0.8))
        labels[_inside(w, v, u, centre, (0.035, 0.04, 0.06))] = NODE
    for side in (-1.0, 1.0):
        labels[_inside(w, v, u, (side * 0.42, -0.02, 0.48), (0.26, 0.42, 0.60))] = LUNG
    spine = (0.0, 0.44, 0.0)
    labels[np.broadcast_to(_inside(w, v, u, spine, (0.10, 0.10, math.inf)), labels.shape)] = CORTEX
    labels[np.broadcast_to(_inside(w, v, u, spine, (0.08, 0.08, math.inf)), labels.shape)] = BONE
    return labels


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: tuple[float, ...], sd: float) -> np.ndarray:
    """Gaussian noise with the correlation a CT kernel gives, rescaled to standard deviation `sd`."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma, output=np.float32)
    noise *= np.float32(sd / max(float(noise.std()), 1e-6))
    return noise


def _low_frequency(rng: np.random.Generator, shape: tuple[int, int, int], sd: float) -> np.ndarray:
    """Slow intensity drift (beam hardening, perfusion): coarse random field, linearly upsampled."""
    coarse = rng.normal(0.0, sd, (8, 12, 12)).astype(np.float32)
    zoom = [n / c for n, c in zip(shape, coarse.shape)]
    field = ndimage.zoom(coarse, zoom, order=1, output=np.float32, grid_mode=True, mode="nearest")
    return field[: shape[0], : shape[1], : shape[2]]


def _lesion_radii_mm(volumes_ml: list[float]) -> list[float]:
    return [(3.0 * v * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0) for v in volumes_ml]


def _place_centres(shape_zyx: tuple[int, int, int], regions: list[str], radii_mm: list[float],
                   rng: np.random.Generator) -> list[np.ndarray]:
    """Lesion centres (z, y, x voxel index) inside their regions, apart from each other.

    Works on a ~3 mm grid: a centre qualifies when its distance to the region's edge is at least
    the lesion's radius (times its region's fit) and it clears every lesion placed before.
    """
    step = (3, 4, 4)
    spacing_zyx = np.array([SPACING_XYZ[2], SPACING_XYZ[1], SPACING_XYZ[0]])
    coarse = anatomy_labels(shape_zyx, step)
    coarse_mm = spacing_zyx * np.asarray(step)
    centres: list[np.ndarray] = []
    placed_mm: list[tuple[np.ndarray, float]] = []
    for region, radius in zip(regions, radii_mm):
        inside = np.isin(coarse, _REGION_LABELS[region])
        depth = ndimage.distance_transform_edt(inside, sampling=coarse_mm)
        candidates = np.argwhere(depth >= _FIT[region] * radius + 1.5)
        points_mm = candidates * coarse_mm
        for other, other_radius in placed_mm:
            clear = np.linalg.norm(points_mm - other, axis=1) >= radius + other_radius + _RING_CLEARANCE_MM
            candidates, points_mm = candidates[clear], points_mm[clear]
        if len(candidates) == 0:
            raise ValueError(f"no room for a {radius:.1f} mm radius lesion in the {region} of a {shape_zyx} volume")
        chosen = int(rng.integers(len(candidates)))
        placed_mm.append((points_mm[chosen], radius))
        centres.append(candidates[chosen] * np.asarray(step) + rng.uniform(-0.5, 0.5, 3) * np.asarray(step))
    return centres


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


@dataclass(frozen=True)
class _LesionShape:
    """An ellipsoid with a lumpy border: radius(direction) = r * (1 + sum of cosine bumps)."""

    rotation: np.ndarray
    axes: np.ndarray  # relative semi-axes, product 1
    bump_normals: np.ndarray  # (k, 3) unit vectors
    bump_amplitudes: np.ndarray
    bump_frequencies: np.ndarray
    bump_phases: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator) -> "_LesionShape":
        axes = rng.uniform(0.8, 1.25, 3)
        normals = rng.standard_normal((5, 3))
        return cls(
            rotation=_random_rotation(rng), axes=axes / np.prod(axes) ** (1.0 / 3.0),
            bump_normals=normals / np.linalg.norm(normals, axis=1, keepdims=True),
            bump_amplitudes=rng.uniform(0.03, 0.08, 5), bump_frequencies=rng.uniform(2.0, 5.0, 5),
            bump_phases=rng.uniform(0.0, 2.0 * math.pi, 5),
        )

    def relative_radius(self, offsets_mm: np.ndarray, radius: float) -> np.ndarray:
        """|offset| over the border's radius in that direction: < 1 inside, 0 at the centre."""
        local = (offsets_mm @ self.rotation) / self.axes
        length = np.linalg.norm(local, axis=-1)
        direction = local / np.maximum(length, 1e-9)[..., None]
        bumps = np.cos(self.bump_frequencies * (direction @ self.bump_normals.T) + self.bump_phases)
        return length / (radius * (1.0 + bumps @ self.bump_amplitudes))


def _lesion_box(centre: np.ndarray, radius_mm: float, shape_zyx: tuple[int, int, int]) -> tuple[slice, ...]:
    spacing_zyx = np.array([SPACING_XYZ[2], SPACING_XYZ[1], SPACING_XYZ[0]])
    half = np.ceil(1.6 * radius_mm / spacing_zyx).astype(int) + 2
    low = np.maximum(np.floor(centre).astype(int) - half, 0)
    high = np.minimum(np.ceil(centre).astype(int) + half + 1, shape_zyx)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))


def _lesion_relative_radius(centre: np.ndarray, box: tuple[slice, ...], shape: _LesionShape,
                            target_ml: float) -> np.ndarray:
    """The lesion's relative radius over its box, with the scale adjusted to the target volume."""
    spacing_zyx = np.array([SPACING_XYZ[2], SPACING_XYZ[1], SPACING_XYZ[0]])
    grid = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) for s in box], indexing="ij"), axis=-1)
    offsets_xyz = ((grid - centre) * spacing_zyx)[..., ::-1]
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    radius = _lesion_radii_mm([target_ml])[0]
    for _ in range(3):  # the border's bumps change the volume: rescale the radius to the target
        relative = shape.relative_radius(offsets_xyz, radius)
        actual_ml = max(int(np.count_nonzero(relative < 1.0)), 1) * voxel_ml
        radius *= (target_ml / actual_ml) ** (1.0 / 3.0)
    return shape.relative_radius(offsets_xyz, radius)


def _lesion_hu(relative: np.ndarray, target_ml: float, rng: np.random.Generator) -> np.ndarray:
    """Heterogeneous enhancing tissue (20-60 HU); lesions over 10 mL get a necrotic centre."""
    base = rng.uniform(30.0, 50.0)
    texture = _smooth_noise(rng, relative.shape, (1.0, 1.5, 1.5), 8.0)
    values = base + texture
    if target_ml > 10.0:
        necrosis = np.clip((0.55 - relative) / 0.25, 0.0, 1.0).astype(np.float32)
        values -= necrosis * np.float32(rng.uniform(25.0, 35.0))
    return values


def _paint_lesions(hu: np.ndarray, centres: list[np.ndarray], volumes_ml: list[float],
                   rng: np.random.Generator) -> list[tuple[tuple[int, int, int], np.ndarray]]:
    """Write each lesion's CT numbers into `hu`; returns (offset, tight mask) per lesion."""
    masks = []
    for centre, volume in zip(centres, volumes_ml):
        box = _lesion_box(centre, _lesion_radii_mm([volume])[0], hu.shape)
        relative = _lesion_relative_radius(centre, box, _LesionShape.random(rng), volume)
        inside = relative < 1.0
        hu[box][inside] = _lesion_hu(relative, volume, rng)[inside]
        low = np.argwhere(inside).min(axis=0)
        high = np.argwhere(inside).max(axis=0) + 1
        offset = tuple(int(b.start + lo) for b, lo in zip(box, low))
        masks.append((offset, inside[low[0]:high[0], low[1]:high[1], low[2]:high[2]].copy()))
    return masks


def _image(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mean CT numbers per tissue, with drift in the body and parenchymal texture in the lungs."""
    hu = _MEAN_HU[labels]
    body = labels != AIR
    hu += _low_frequency(rng, labels.shape, 6.0) * body
    lung = labels == LUNG
    hu[lung] += _smooth_noise(rng, labels.shape, (1.0, 1.5, 1.5), 40.0)[lung]
    return hu


def _acquire(hu: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scanner effects: in-plane blur (point-spread) and kernel-correlated noise, SD ~18 HU."""
    blurred = ndimage.gaussian_filter(hu, (0.5, 0.8, 0.8), output=np.float32)
    blurred += _smooth_noise(rng, hu.shape, (0.4, 0.7, 0.7), 18.0)
    np.maximum(blurred, -1024.0, out=blurred)
    return blurred


def make_study(shape_zyx: tuple[int, int, int] = (300, 512, 512), n_lesions: int = 10,
               volume_range_ml: tuple[float, float] = (0.5, 100.0), seed: int = 2018) -> SyntheticStudy:
    """The study: volumes spread log-uniformly over the range, largest in the roomiest regions."""
    rng = np.random.default_rng(seed)
    volumes = [float(v) for v in np.geomspace(volume_range_ml[1], volume_range_ml[0], n_lesions)]
    regions = [REGION_CYCLE[i % len(REGION_CYCLE)] for i in range(n_lesions)]
    centres = _place_centres(shape_zyx, regions, _lesion_radii_mm(volumes), rng)
    hu = _image(anatomy_labels(shape_zyx), rng)
    masks = _paint_lesions(hu, centres, volumes, rng)
    hu = _acquire(hu, rng)
    size = (shape_zyx[2], shape_zyx[1], shape_zyx[0])
    origin = (-(size[0] - 1) * SPACING_XYZ[0] / 2.0 + 0.23, -(size[1] - 1) * SPACING_XYZ[1] / 2.0 - 11.6, -412.5)
    geometry = ImageGeometry(size=size, spacing=SPACING_XYZ, origin=origin)
    ct = CtSeries(hu, geometry, _uid(1), _uid(2), _uid(3), CT_IMAGE_STORAGE,
                  tuple(_uid(4, z) for z in range(shape_zyx[0])), kvp=120.0)
    lesions = [
        LesionMask(number, f"{_NAMES[region]} {number}", "RTSTRUCT", RT_STRUCTURE_SET_STORAGE, _uid(5), offset, mask)
        for number, (region, (offset, mask)) in enumerate(zip(regions, masks), start=1)
    ]
    return SyntheticStudy(ct, lesions, regions)
