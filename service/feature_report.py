"""Features per ROI and per region under explicit settings: the `features` command's Python API.

The same engine as the service (crops on the whole image's IBSI grid, absolute discretisation,
the ring), without a signature: for research, for checking the engine against IBSI, and for
sites calibrating their own signature. Inputs are a DICOM CT with an RTSTRUCT or SEG, or a NIfTI
image with a label mask (how the IBSI digital phantom is distributed).

Usage::

    from service.feature_report import features_from_dicom, features_from_nifti
    from service.scoring.parameter_file import load_parameter_file
    report = features_from_nifti(image, mask, load_parameter_file(params))
    report.as_json()["rois"][0]["regions"]["core"]["stat_min"]
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

import service
from service.errors import InputError
from service.imaging.contours import rtstruct_to_masks, seg_to_masks
from service.imaging.crops import lesion_crop
from service.model import CtSeries, ImageGeometry, LesionMask, LesionSource
from service.imaging.selection import read_study_headers, select_inputs
from service.scoring.degenerate import undefined_features
from service.scoring.extent import box_ends
from service.scoring.features import engine_versions
from service.scoring.lesion import lesion_features
from service.scoring.panel import full_panel
from service.scoring.settings import ExtractionSettings
from service.sop_classes import RT_STRUCTURE_SET

_GEOMETRY_TOLERANCE = 1e-4  # mm, or direction cosine: NIfTI image and mask must share their grid


@dataclass(frozen=True)
class RoiFeatures:
    """Features of one ROI, per region; `not_computable` says why a region set is empty."""

    number: int
    name: str
    source: str
    voxel_count: int
    features: dict[str, dict[str, float | None]]
    not_computable: str | None = None
    undefined: dict[str, dict[str, str]] = field(default_factory=dict)  # region -> feature -> why it has no value


@dataclass(frozen=True)
class FeatureReport:
    """What ran (engine versions, settings) and what came out, ROI by ROI."""

    settings: ExtractionSettings
    rois: list[RoiFeatures]
    warnings: list[str]

    def as_json(self) -> dict[str, object]:
        return {
            "engine": {"radiomics-cds": service.__version__, **engine_versions()},
            "settings": self.settings.as_dict(),
            "naming": "IBSI tags where IBSI defines the feature, else <pyradiomics class>_<feature>",
            "rois": [
                {
                    "number": roi.number, "name": roi.name, "source": roi.source, "voxel_count": roi.voxel_count,
                    "not_computable": roi.not_computable, "undefined": roi.undefined, "regions": roi.features,
                }
                for roi in self.rois
            ],
            "warnings": self.warnings,
        }


def _roi_features(ct: CtSeries, lesion: LesionMask, settings: ExtractionSettings) -> RoiFeatures:
    crop = lesion_crop(ct, lesion, settings)
    features, reason = lesion_features(crop, settings, full_panel(settings))
    # NaN marks a feature with no value on this region (a degenerate region, or a ratio of zeros
    # in pyradiomics' formula); JSON has no NaN, and a reader must see why rather than read a number.
    clean: dict[str, dict[str, float | None]] = {}
    undefined: dict[str, dict[str, str]] = {}
    for region, values in features.items():
        clean[region] = {name: (None if math.isnan(v) else v) for name, v in values.items()}
        missing = undefined_features(values)
        if missing:
            undefined[region] = missing
    return RoiFeatures(lesion.number, lesion.name, lesion.source, lesion.voxel_count, clean, reason, undefined)


def _selected(masks: list[LesionMask], rois: Iterable[str] | None) -> list[LesionMask]:
    if rois is None:
        return masks
    wanted = set(rois)
    chosen = [m for m in masks if m.name in wanted or str(m.number) in wanted]
    unknown = wanted - {m.name for m in chosen} - {str(m.number) for m in chosen}
    if unknown:
        raise InputError(f"no ROI with contours named or numbered {sorted(unknown)}")
    return chosen


def features_from_dicom(
    ct_dir: Path, contour_file: Path, settings: ExtractionSettings, rois: Iterable[str] | None = None
) -> FeatureReport:
    """Every ROI (or the named/numbered ones) of an RTSTRUCT or SEG on its CT series."""
    inputs, warnings = select_inputs(read_study_headers(ct_dir, contour_file))
    if inputs.contours.SOPClassUID == RT_STRUCTURE_SET:
        masks = rtstruct_to_masks(inputs.contours, inputs.ct)
    else:
        masks = seg_to_masks(inputs.contours, inputs.ct)
    chosen = _selected(masks, rois)
    warnings += [f"ROI {m.number}: {w}" for m in chosen for w in m.warnings]
    return FeatureReport(settings, [_roi_features(inputs.ct, m, settings) for m in chosen], warnings)


def _geometry(image: sitk.Image) -> ImageGeometry:
    return ImageGeometry(
        size=tuple(image.GetSize()), spacing=tuple(image.GetSpacing()),
        origin=tuple(image.GetOrigin()), direction=tuple(image.GetDirection()),
    )


def _read_nifti(path: Path, what: str) -> sitk.Image:
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise InputError(f"cannot read the {what} {Path(path).name}: {str(error).splitlines()[-1]}") from error
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"the {what} must be a 3D single-channel image")
    return image


def _check_same_grid(image: ImageGeometry, mask: ImageGeometry) -> None:
    if image.size != mask.size:
        raise InputError(f"mask size {mask.size} differs from image size {image.size}")
    for name in ("spacing", "origin", "direction"):
        if not np.allclose(getattr(image, name), getattr(mask, name), atol=_GEOMETRY_TOLERANCE):
            raise InputError(f"mask {name} {getattr(mask, name)} differs from image {name} {getattr(image, name)}")


def _label_masks(labels: np.ndarray, wanted: int | None) -> list[LesionMask]:
    values = [int(v) for v in np.unique(labels) if v != 0] if wanted is None else [wanted]
    masks = []
    for value in values:
        voxels = labels == value
        try:
            ends = box_ends(voxels)  # labels is a 3-D volume
        except ValueError:
            raise InputError(f"the mask has no voxel with label {value}") from None
        box = tuple(slice(low, high + 1) for low, high in ends)
        offset = (ends[0][0], ends[1][0], ends[2][0])
        masks.append(LesionMask(value, f"label {value}", LesionSource.NIFTI, "", "", offset, voxels[box]))
    if not masks:
        raise InputError("the mask has no labelled voxel")
    return masks


def features_from_nifti(image_path: Path, mask_path: Path, settings: ExtractionSettings) -> FeatureReport:
    """Every label of a NIfTI mask (or settings.label) on a NIfTI image of the same grid."""
    image = _read_nifti(image_path, "image")
    mask = _read_nifti(mask_path, "mask")
    geometry = _geometry(image)
    _check_same_grid(geometry, _geometry(mask))
    volume = CtSeries(
        hu=sitk.GetArrayFromImage(image).astype(np.float32), geometry=geometry, study_instance_uid="",
        series_instance_uid="", frame_of_reference_uid="", sop_class_uid="", sop_instance_uids=(), kvp=None,
    )
    labels = sitk.GetArrayFromImage(mask)
    if not np.array_equal(labels, np.round(labels)):
        raise InputError("the mask holds non-integer values; give a label map")
    masks = _label_masks(labels.astype(np.int64), settings.label)
    return FeatureReport(settings, [_roi_features(volume, m, settings) for m in masks], [])
