"""The MIRP contender of bench_scoring.py, run by MIRP's own interpreter (.venv-mirp, scripts/install-mirp).

    <mirp python> bench/mirp_contender.py SETUP.json

MIRP brings ITK, pandas and scikit-image and no SimpleITK, so it runs in a virtualenv of its own
and this script is its side of the benchmark: it reads the CT once, then answers one command per
line on stdin with one JSON line on stdout (MIRP logs to stdout, so its output goes to stderr):
- `warm-up`: one untimed lesion (the smallest), so that first-call costs are not timed;
- `study`: every lesion, as a MIRP user scores it from a CT and a lesion mask, timed per lesion:
  the padded crop, the core label map, the 2 mm ring (binary dilation minus erosion of the core
  with an ellipsoidal ball, scipy.ndimage), the crop and both masks written as NIfTI (MIRP reads
  images with their geometry from files) and MIRP's extract_features for core and ring;
  answers {"study_s", "lesion_s", "features": [{region: {MIRP name: value}}]};
- `peak`: this process's peak resident set (VmHWM), MiB.

SETUP.json: {"ct": image file, "lesions": .npz with offset_<i> (z, y, x) and mask_<i>,
"ring_radius_xyz", "pad_xyz", "new_spacing_mm", "families": {region: [MIRP families]},
"settings": {extract_features keyword arguments}, "scratch": folder}.

The crop is widened (by at most a few voxels) until its IBSI grid, which MIRP centres on the
crop, falls on the whole image's grid, which ours uses: so the core's values can be compared.
"""

from __future__ import annotations

import itertools
import json
import numbers
import os
import sys
import time
from pathlib import Path

import itk
import numpy as np
from mirp import extract_features
from scipy import ndimage

ALIGNMENT_TOLERANCE = 1e-6  # new voxels
MAX_WIDENING = 40  # original voxels per side searched for an aligned crop


def _grid_offset(low: int, count: int, spacing: float, new_spacing: float) -> float:
    """First point of the IBSI grid of voxels [low, low + count), in original index units."""
    step = new_spacing / spacing
    points = int(np.ceil(count * spacing / new_spacing))
    return low + 0.5 * (count - 1) - 0.5 * (points - 1) * step


def aligned_bounds(low: int, high: int, size: int, spacing: float, new_spacing: float) -> tuple[int, int]:
    """[low, high) widened least so that its IBSI grid lies on the whole axis' grid."""
    step = new_spacing / spacing
    whole = _grid_offset(0, size, spacing, new_spacing)
    for widen in range(2 * MAX_WIDENING + 1):
        for below in range(widen + 1):
            lo, hi = low - below, high + widen - below
            if lo < 0 or hi > size:
                continue
            shift = (_grid_offset(lo, hi - lo, spacing, new_spacing) - whole) / step
            if abs(shift - round(shift)) < ALIGNMENT_TOLERANCE:
                return lo, hi
    raise ValueError(f"no crop of [{low}, {high}) within {MAX_WIDENING} voxels is on the whole image's grid")


def ball(radius_xyz: list[int]) -> np.ndarray:
    """Ellipsoidal structuring element (z, y, x) of the given radii in voxels."""
    rx, ry, rz = radius_xyz
    z, y, x = np.ogrid[-rz:rz + 1, -ry:ry + 1, -rx:rx + 1]
    return np.asarray((x / rx) ** 2 + (y / ry) ** 2 + (z / rz) ** 2 <= 1.0)


class Study:
    """The CT and the lesions, read once; scores lesions as a MIRP user does."""

    def __init__(self, setup: dict) -> None:
        image = itk.imread(setup["ct"])
        self.hu = itk.array_from_image(image)  # (z, y, x)
        self.spacing_xyz = [float(s) for s in image.GetSpacing()]
        self.origin_xyz = np.asarray([float(o) for o in image.GetOrigin()])
        self.direction = np.asarray(itk.array_from_matrix(image.GetDirection()), dtype=float)
        lesions = np.load(setup["lesions"])
        count = len([k for k in lesions.files if k.startswith("mask_")])
        self.lesions = [(tuple(int(v) for v in lesions[f"offset_{i}"]), lesions[f"mask_{i}"]) for i in range(count)]
        self.setup = setup
        self.footprint = ball(setup["ring_radius_xyz"])
        self.scratch = Path(setup["scratch"])

    def _write(self, array: np.ndarray, start_zyx: list[int], path: Path) -> str:
        image = itk.image_from_array(np.ascontiguousarray(array))
        image.SetSpacing(self.spacing_xyz)
        start_xyz = np.asarray(start_zyx[::-1], dtype=float)
        image.SetOrigin(self.origin_xyz + self.direction @ (start_xyz * self.spacing_xyz))
        image.SetDirection(itk.matrix_from_array(self.direction))
        itk.imwrite(image, str(path))
        return str(path)

    def lesion(self, offset_zyx: tuple[int, int, int], mask: np.ndarray) -> dict[str, dict[str, float]]:
        pad = self.setup["pad_xyz"][::-1]
        new = self.setup["new_spacing_mm"]
        bounds = []
        for axis in range(3):
            low = max(0, offset_zyx[axis] - pad[axis])
            high = min(self.hu.shape[axis], offset_zyx[axis] + mask.shape[axis] + pad[axis])
            bounds.append(aligned_bounds(low, high, self.hu.shape[axis], self.spacing_xyz[2 - axis], new))
        start = [low for low, _ in bounds]
        crop = self.hu[tuple(slice(low, high) for low, high in bounds)]
        core = np.zeros(crop.shape, dtype=np.uint8)
        core[tuple(slice(o - s, o - s + n) for o, s, n in zip(offset_zyx, start, mask.shape))] = mask
        ring = ndimage.binary_dilation(core, self.footprint) & ~ndimage.binary_erosion(core, self.footprint)
        image = self._write(crop, start, self.scratch / "crop.nii")
        masks = {"core": self._write(core, start, self.scratch / "core.nii"),
                 "ring": self._write(ring.astype(np.uint8), start, self.scratch / "ring.nii")}
        values = {}
        for region, families in self.setup["families"].items():
            (table,) = extract_features(image=image, mask=masks[region], base_feature_families=families,
                                        **self.setup["settings"])
            row = table.iloc[0]
            values[region] = {name: float(value) for name, value in row.items()
                              if isinstance(value, numbers.Real) and not isinstance(value, bool)}
        return values

    def study(self) -> dict:
        start = time.perf_counter()
        seconds, features = [], []
        for offset, mask in self.lesions:
            lesion_start = time.perf_counter()
            features.append(self.lesion(offset, mask))
            seconds.append(time.perf_counter() - lesion_start)
        return {"study_s": time.perf_counter() - start, "lesion_s": seconds, "features": features}

    def warm_up(self) -> dict:
        offset, mask = min(self.lesions, key=lambda lesion: int(lesion[1].sum()))
        self.lesion(offset, mask)
        return {}


def _peak_rss_mib() -> dict:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return {"peak_rss_mib": int(line.split()[1]) / 1024.0}
    raise RuntimeError("no VmHWM")


def main() -> None:
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # MIRP's (and anything else's) prints go to stderr, not into the replies
    sys.stdout = sys.stderr
    study = Study(json.loads(Path(sys.argv[1]).read_text()))
    commands = {"warm-up": study.warm_up, "study": study.study, "peak": _peak_rss_mib}
    for line in itertools.takewhile(bool, map(str.strip, sys.stdin)):
        try:
            reply = commands[line]()
        except Exception as error:  # reported to the benchmark, which marks MIRP as unable to run
            reply = {"error": f"{type(error).__name__}: {error}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
