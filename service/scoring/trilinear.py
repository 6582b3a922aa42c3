"""Trilinear interpolation of an array at a grid of points aligned with its axes, with numpy.

The IBSI grid (service.scoring.resample) shares the image's direction, so along each axis its
points sit at fixed continuous indices of the image, and trilinear interpolation separates into
three passes, one per axis. Each pass is the formula ITK's LinearInterpolateImageFunction
evaluates, in ITK's order (along x, then y, then z: a + (b - a) * d), with its rules at the
array's edge: a point up to half a voxel beyond the outermost centre takes that centre's value,
and a point further out the default value. SimpleITK's ResampleImageFilter did the same per
output voxel, through physical coordinates, and cost a quarter of a small lesion's scoring; the
values agree to rounding (tests/unit/test_trilinear.py).

The positions are continuous indices of the whole image, not of the crop: the weights then do
not depend on where a crop starts, and a crop gives bit for bit what the whole volume gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class _AxisSamples:
    """Along one axis, for every grid position: its two neighbours in the array and the weight
    of the upper one; `inside`: within the array's buffer (ITK's IsInsideBuffer)."""

    lower: np.ndarray
    upper: np.ndarray
    weight: np.ndarray
    inside: np.ndarray


def _axis_samples(positions: np.ndarray, start: int, n: int) -> _AxisSamples:
    """`positions`: continuous image indices; the array holds image indices start..start+n-1."""
    floor = np.floor(positions)
    weight = positions - floor
    lower = floor.astype(np.int64) - start
    inside = (positions >= start - 0.5) & (positions < start + n - 0.5)
    weight = np.where(lower < 0, 0.0, weight)  # before the first centre: its value
    lower = np.clip(lower, 0, n - 1)
    upper = np.minimum(lower + 1, n - 1)  # after the last centre: a + (a - a) * d is a
    return _AxisSamples(lower, upper, weight, inside)


def trilinear(values_zyx: np.ndarray, positions_xyz: Sequence[np.ndarray], start_xyz: Sequence[int],
              outside: float) -> np.ndarray:
    """`values_zyx` (the image's voxels from `start_xyz` on) interpolated at every combination of
    the continuous image indices `positions_xyz` (one ascending array per axis, x y z), float64
    (z, y, x); points beyond the array's buffer get `outside`."""
    # The arithmetic is float64 from the first pass on, but the input is never copied to float64:
    # each pass takes its neighbours in the type it reads (float32 intensities, a boolean mask)
    # and numpy casts them inside the subtraction and the addition. Converting a float32 or
    # boolean value to float64 is exact, so the values are those of a float64 copy.
    result = np.asarray(values_zyx)
    beyond = np.zeros((1, 1, 1), dtype=bool)
    for axis_xyz, positions in enumerate(positions_xyz):
        axis = 2 - axis_xyz
        samples = _axis_samples(np.asarray(positions, dtype=np.float64), int(start_xyz[axis_xyz]),
                                values_zyx.shape[axis])
        shape = [1, 1, 1]
        shape[axis] = -1
        low = np.take(result, samples.lower, axis=axis)
        if samples.weight.any():
            # a + (b - a) * d in ITK's order, in place after the subtraction's fresh array.
            result = np.subtract(np.take(result, samples.upper, axis=axis), low, dtype=np.float64)
            result *= samples.weight.reshape(shape)
            result += low
        else:
            # Every point on a voxel centre (the new spacing equals the image's along this axis, as
            # for 1 mm slices resampled to 1 mm): a + (b - a) * 0 is a, for the finite a and b of
            # intensities and masks.
            result = low
        beyond = beyond | ~samples.inside.reshape(shape)
    result = result.astype(np.float64, copy=False)  # a pass that only took keeps the input's type
    if beyond.any():
        result[np.broadcast_to(beyond, result.shape)] = outside
    return result
