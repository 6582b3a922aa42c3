"""pyradiomics' grey level run length matrix, counted with array operations over the region's box.

pyradiomics counts runs in C (`cMatrices.calculate_glrlm`): for each of the 13 directions it walks
every line through the image's box voxel by voxel, about 9 ns per voxel and direction here. For a
100 mL lesion's core and ring (boxes of 220 000 and 270 000 voxels) that is 64 ms, more than half
of the CD8 profile's time, and the ring's box is mostly voxels outside the ring.

Here the runs of all directions are counted by a few whole-array numpy steps:

- The grey levels are padded by one voxel of 0 on every side and read as one flat array. A step
  in direction d is a constant step `off` in that array (d . strides). Taking every `off`-th
  element from each start 0..off-1 (a transposed reshape) lays the flat array out as chains,
  each the concatenation of lines of direction d. Wherever a chain leaves one line for the next,
  the coordinate that carries passes through the padding, so lines are always separated by a 0,
  as are voxels outside the region (0 too). The directions' layouts are rows of one array (a few
  directions at a time for a large box).
- A run is then a maximal stretch of equal non-zero values in that array: its starts are where
  the value changes, its length the distance to the next change; a `bincount` of
  (level, length) per row gives that direction's column of the matrix.

In process, the 100 mL lesion's core and ring take 19 ms this way, against pyradiomics' 64 ms. The
cost follows the number of runs: noise, nearly a run per voxel, is the worst case (a 100-voxel
cube of 30 noise levels: 86 ms against the C's 147 with the scorer's allocator settings, 156
against 145 without).

The counts are integers, so the matrix is pyradiomics' own, element for element, and so is every
feature computed from it (tests/unit/test_glrlm_chains.py holds both to pyradiomics' C and class).
One rule of pyradiomics' is kept as it is: when no line of a direction holds two voxels of the
region (a one-voxel-thin region seen across), that direction's runs are dropped.

Distance weighting and voxel-based extraction, which this service never uses, go to pyradiomics'
own matrix step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from radiomics import cMatrices

# Chain elements laid out at once: the run starts and their (level, length) indices take 8 bytes
# each, so at most about 16 MB per array, under the scorer's mmap threshold (service.allocator).
_LAYOUT_ELEMENTS = 1 << 21


def direction_steps(shape: tuple[int, ...], force_2d: bool, force_2d_dimension: int) -> np.ndarray:
    """The directions pyradiomics' C counts runs in for an image of `shape` (z, y, x), in its
    order: one per pair of opposite directions, none that leaves a one-voxel-thick axis."""
    angles: np.ndarray = cMatrices.generate_angles(np.array(shape), np.array([1]), False, force_2d, force_2d_dimension)
    return angles


def run_length_counts(ranks: np.ndarray, n_levels: int, max_length: int, directions: np.ndarray) -> np.ndarray:
    """Runs per (level, length, direction), shape (n_levels, max_length, directions).

    `ranks` (z, y, x) holds each region voxel's grey level as 1..n_levels and 0 outside the
    region. Length 1 is column 0. A direction in which no line holds two region voxels has no
    runs (pyradiomics' rule).
    """
    dtype = np.min_scalar_type(n_levels)  # one byte per voxel below 256 levels
    padded_shape = tuple(size + 2 for size in ranks.shape)
    strides = np.array([padded_shape[1] * padded_shape[2], padded_shape[2], 1])
    n_voxels = int(np.prod(padded_shape))
    # Room for a whole number of chain steps after the image, plus one more of zeros: every
    # chain's last element is then a 0, which ends the run before it.
    flat = np.zeros(n_voxels + 2 * int(strides.sum()), dtype=dtype)
    flat[:n_voxels].reshape(padded_shape)[1:-1, 1:-1, 1:-1] = ranks
    steps = [int(step) for step in directions @ strides]
    lengths = [(-(-n_voxels // step) + 1) * step for step in steps]
    width = max(lengths)
    counts = np.empty((n_levels, max_length, len(steps)), dtype=np.float64)
    # Several directions' chains side by side, one row each (zeros after them), so that the steps
    # below run once for all of them; as many rows as keep the arrays of run starts within
    # _LAYOUT_ELEMENTS (a noisy region has nearly one run per voxel and direction).
    rows_at_once = max(1, _LAYOUT_ELEMENTS // width)
    for first in range(0, len(steps), rows_at_once):
        rows = range(first, min(first + rows_at_once, len(steps)))
        layouts = np.zeros((len(rows), width), dtype=dtype)
        for layout, row in zip(layouts, rows):
            step, length = steps[row], lengths[row]
            layout[:length].reshape(step, length // step)[...] = flat[:length].reshape(length // step, step).T
        counts[:, :, rows.start:rows.stop] = _counts_of_rows(layouts, n_levels, max_length)
    _drop_directions_without_two_voxels_on_a_line(counts, ranks, directions)
    return counts


def _counts_of_rows(layouts: np.ndarray, n_levels: int, max_length: int) -> np.ndarray:
    """Runs per (level, length, row) of chain layouts, each row starting with a 0 (no run
    crosses rows)."""
    chains = layouts.ravel()
    starts = np.flatnonzero(chains[1:] != chains[:-1])
    starts += 1
    # One index per run for (level, length): length + level * (max_length + 1); rows apart below.
    key = np.empty_like(starts)
    np.subtract(starts[1:], starts[:-1], out=key[:-1])
    key[-1:] = chains.size - starts[-1:]  # run lengths; a stretch of 0s may be longer
    np.minimum(key, max_length, out=key)
    key += np.multiply(chains[starts], max_length + 1, dtype=np.intp)
    width = layouts.shape[1]
    row_ends = np.searchsorted(starts, np.arange(1, len(layouts) + 1) * width)  # the starts are ascending
    counts = np.empty((n_levels, max_length, len(layouts)), dtype=np.float64)
    for row, (first, end) in enumerate(zip([0, *row_ends[:-1]], row_ends)):
        per_level = np.bincount(key[first:end], minlength=(n_levels + 1) * (max_length + 1))
        counts[:, :, row] = per_level.reshape(n_levels + 1, max_length + 1)[1:, 1:]
    return counts


def _drop_directions_without_two_voxels_on_a_line(counts: np.ndarray, ranks: np.ndarray, directions: np.ndarray) -> None:
    """pyradiomics' rule: a direction none of whose lines holds two region voxels gets no runs.
    Only a direction whose runs are all of length 1 can be such a direction; the check groups the
    region's voxels by line (each line named by where it meets the plane of its first moving axis)."""
    only_single_voxels = np.flatnonzero(~counts[:, 1:, :].any(axis=(0, 1)))
    if not only_single_voxels.size:
        return
    coordinates = np.argwhere(ranks)
    for index in only_single_voxels:
        direction = directions[index]
        axis = int(np.flatnonzero(direction)[0])
        line_starts = coordinates - np.outer(coordinates[:, axis] * direction[axis], direction)
        if len(np.unique(line_starts, axis=0)) == len(line_starts):
            counts[:, 0, index] = 0


class ChainRunLengths:
    """Mixin over radiomics.glrlm.RadiomicsGLRLM (listed before it in the bases)."""

    # Set by pyradiomics' RadiomicsGLRLM, the class this is mixed into (declared, not assigned).
    imageArray: np.ndarray
    maskArray: np.ndarray
    coefficients: dict[str, Any]
    settings: dict[str, Any]
    voxelBased: bool
    weightingNorm: str | None

    def _calculateMatrix(self, voxelCoordinates: Any = None) -> np.ndarray:  # noqa: N802 (pyradiomics' name)
        """pyradiomics' matrix (glrlm.RadiomicsGLRLM._calculateMatrix), shape (1, grey levels
        present, max(image shape), directions): the levels present only, then the directions
        without runs removed and the run totals Nr (NaN where 0), as pyradiomics does."""
        if self.voxelBased or self.weightingNorm is not None:
            matrix: np.ndarray = super()._calculateMatrix(voxelCoordinates)  # type: ignore[misc]
            return matrix
        grey_levels = self.coefficients["grayLevels"]
        rank_of_level = np.zeros(int(self.coefficients["Ng"]) + 1, dtype=np.intp)
        rank_of_level[grey_levels] = np.arange(1, len(grey_levels) + 1)
        ranks = np.zeros(self.imageArray.shape, dtype=np.intp)  # outside the region 0, whatever its bin
        ranks[self.maskArray] = rank_of_level[self.imageArray[self.maskArray]]
        directions = direction_steps(self.imageArray.shape, self.settings.get("force2D", False),
                                     self.settings.get("force2Ddimension", 0))
        p_glrlm = run_length_counts(ranks, len(grey_levels), int(np.max(self.imageArray.shape)), directions)[None]
        runs = np.sum(p_glrlm, (1, 2))
        if p_glrlm.shape[3] > 1:
            # Contiguous as numpy.delete leaves pyradiomics' arrays: numpy's sums over them then
            # add in the same order, and every feature is the same number bit for bit.
            with_runs = np.sum(runs, 0) != 0
            p_glrlm, runs = np.ascontiguousarray(p_glrlm[:, :, :, with_runs]), np.ascontiguousarray(runs[:, with_runs])
        runs[runs == 0] = np.nan
        self.coefficients["Nr"] = runs
        return p_glrlm
