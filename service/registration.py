"""Rigid registration of a prior CT to the current one, as the prior -> current frame mapping.

Used only when the two studies' Frames of Reference differ and no Spatial Registration object
relates them (docs/method.md section 5). The recipe is fixed so that
two replicas, or a re-run, find the same mapping: SimpleITK ImageRegistrationMethod, Euler3D
initialised by the images' geometric centres, Mattes mutual information with 50 bins, HU
clipped to [-200, 1500] so bone dominates, a 3-level pyramid at 8, 4 and 2 mm, regular-step
gradient descent, a fixed sampling seed and one thread. A registration that stops on its
iteration limit or ends with a weak metric is rejected: geometric matching is then "not
available", never guessed.

This module sits in the pipeline layer: it needs SimpleITK and the longitudinal FrameMapping,
and the scoring layer may not import the longitudinal core.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from service.longitudinal.frames import FrameMapping
from service.model import CtSeries

HU_WINDOW = (-200.0, 1500.0)
PYRAMID_MM = (8.0, 4.0, 2.0)
HISTOGRAM_BINS = 50
SAMPLING_PERCENTAGE = 0.25
SEED = 20240110
MAX_ITERATIONS = 200
# Mattes MI is negative, lower is better. CT of one patient's same region registers well below
# -0.3 at 2 mm with this window (STS_019 moved 5 degrees and 20 mm: about -1.0); scans that do not overlap, or
# register to a wrong local optimum, stay near 0. An engineering threshold, not a literature one.
ACCEPT_METRIC_BELOW = -0.3


@dataclass(frozen=True)
class RegistrationOutcome:
    """The mapping when accepted, the final metric, and why it was rejected when it was."""

    mapping: FrameMapping | None
    metric: float | None
    reason: str | None = None

    @property
    def accepted(self) -> bool:
        return self.mapping is not None


def sitk_image(ct: CtSeries) -> sitk.Image:
    """The CT as a SimpleITK image in patient coordinates (LPS, mm)."""
    image = sitk.GetImageFromArray(np.asarray(ct.hu, dtype=np.float32))
    image.SetSpacing(ct.geometry.spacing)
    image.SetOrigin(ct.geometry.origin)
    image.SetDirection(ct.geometry.direction)
    return image


def register_prior_ct(current: CtSeries, prior: CtSeries) -> RegistrationOutcome:
    """Register `prior` (moving) to `current` (fixed); the mapping takes prior points to current.

    SimpleITK's transform maps fixed-space points into the moving space (current -> prior), so
    the mapping is its inverse.
    """
    fixed = sitk.Clamp(sitk_image(current), sitk.sitkFloat32, *HU_WINDOW)
    moving = sitk.Clamp(sitk_image(prior), sitk.sitkFloat32, *HU_WINDOW)
    transform = sitk.Euler3DTransform(sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY))
    try:
        for level_mm in PYRAMID_MM:
            method = _method(level_mm)
            method.SetInitialTransform(transform, inPlace=True)
            method.Execute(_level(fixed, level_mm), _level(moving, level_mm))
    except RuntimeError as error:  # ITK raises when too few samples overlap
        return RegistrationOutcome(None, None, f"rigid registration failed ({str(error).splitlines()[-1][:80]})")
    metric = float(method.GetMetricValue())
    if method.GetOptimizerIteration() >= MAX_ITERATIONS:
        return RegistrationOutcome(None, metric, "rigid registration did not converge (iteration limit)")
    if not np.isfinite(metric) or metric >= ACCEPT_METRIC_BELOW:
        return RegistrationOutcome(None, metric, f"rigid registration rejected: metric {metric:.3f} "
                                                 f"not below {ACCEPT_METRIC_BELOW}")
    return RegistrationOutcome(FrameMapping(_inverse_matrix(transform), f"rigid registration, metric {metric:.3f}"),
                               metric)


def _method(level_mm: float) -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=HISTOGRAM_BINS)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(SAMPLING_PERCENTAGE, SEED)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=level_mm / 2.0, minStep=0.01,
                                                    numberOfIterations=MAX_ITERATIONS, relaxationFactor=0.5,
                                                    gradientMagnitudeTolerance=1e-6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetNumberOfThreads(1)
    return method


def _level(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """The image smoothed (sigma half the level's spacing) and resampled to an isotropic grid of
    `spacing_mm` over the same extent: one pyramid level, in millimetres whatever the input
    spacing (CT slices are often much thicker than pixels are wide)."""
    smoothed = sitk.SmoothingRecursiveGaussian(image, spacing_mm / 2.0)
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    size = [max(1, int(round(n))) for n in np.asarray(image.GetSize()) * spacing / spacing_mm]
    origin = np.asarray(image.GetOrigin()) + np.asarray(image.GetDirection()).reshape(3, 3) @ (
        (np.full(3, spacing_mm) - spacing) / 2.0)
    return sitk.Resample(smoothed, size, sitk.Transform(), sitk.sitkLinear, tuple(origin.tolist()),
                         (spacing_mm,) * 3, image.GetDirection(), HU_WINDOW[0], sitk.sitkFloat32)


def _inverse_matrix(transform: sitk.Euler3DTransform) -> tuple[float, ...]:
    """Row-major 4x4 of the transform's inverse: x -> R (x - c) + c + t, inverted."""
    rotation = np.asarray(transform.GetMatrix(), dtype=float).reshape(3, 3)
    centre = np.asarray(transform.GetCenter(), dtype=float)
    forward = np.eye(4)
    forward[:3, :3] = rotation
    forward[:3, 3] = centre + np.asarray(transform.GetTranslation(), dtype=float) - rotation @ centre
    return tuple(np.linalg.inv(forward).ravel().tolist())
