"""IBSI conformance on the IBSI-1 digital phantom, through the `features` command.

Reference values and tolerances are IBSI's (../shared/data/ibsi-digital-phantom/reference-values.csv).
The IBSI rule: round the computed value to 3 significant figures, then it must lie within the
tolerance of the reference. Every feature we output under an IBSI tag is checked; features that
keep pyradiomics names (TotalEnergy, MCC, 2D diameters) are not IBSI-defined.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from service.feature_report import features_from_nifti
from service.scoring.ibsi_names import is_ibsi_defined
from service.scoring.parameter_file import load_parameter_file

REPO = Path(__file__).resolve().parents[2]
PARAMETERS = REPO / "examples" / "parameters" / "ibsi-phantom.yaml"

# 11 morphology, 15 statistics + 2 histogram (entropy, uniformity), 23 GLCM, 16 GLRLM, 16 GLSZM,
# 14 NGLDM (pyradiomics GLDM) and 5 NGTDM features carry IBSI tags in our output.
EXPECTED_IBSI_FEATURES = 11 + 17 + 23 + 16 + 16 + 14 + 5


@pytest.fixture(scope="module")
def phantom(data_dir: Path) -> tuple[Path, Path]:
    root = data_dir / "ibsi-digital-phantom" / "nifti"
    return root / "image" / "phantom.nii.gz", root / "mask" / "mask.nii.gz"


@pytest.fixture(scope="module")
def reference(data_dir: Path) -> dict[str, tuple[float, float]]:
    with open(data_dir / "ibsi-digital-phantom" / "reference-values.csv", newline="") as handle:
        rows = csv.DictReader(handle, delimiter=";")
        return {row["tag"]: (float(row["reference value"]), float(row["tolerance"]))
                for row in rows if row["reference value"]}


def _three_significant_figures(value: float) -> float:
    if value == 0:
        return 0.0
    return round(value, 2 - int(math.floor(math.log10(abs(value)))))


def _failures(core: dict[str, float], reference: dict[str, tuple[float, float]]) -> tuple[int, list[str]]:
    compared, failures = 0, []
    for tag, value in sorted(core.items()):
        if not is_ibsi_defined(tag):
            continue
        assert tag in reference, f"{tag} is output under an IBSI tag the reference does not know"
        expected, tolerance = reference[tag]
        compared += 1
        if abs(_three_significant_figures(value) - expected) > tolerance + 1e-12:
            failures.append(f"{tag}: {value:.6g} (IBSI {expected} ± {tolerance})")
    return compared, failures


def test_three_significant_figures_rule():
    assert _three_significant_figures(9.2449) == 9.24
    assert _three_significant_figures(0.0296042) == 0.0296
    assert _three_significant_figures(1494.6) == 1490


def test_every_ibsi_feature_of_the_3d_configuration_matches_the_reference(phantom, reference):
    image, mask = phantom
    completed = subprocess.run(
        [sys.executable, "-m", "service.cli", "features", "--image", str(image), "--mask", str(mask),
         "--settings", str(PARAMETERS), "--json"],
        capture_output=True, text=True, check=True, cwd=REPO,
    )
    document = json.loads(completed.stdout)
    (roi,) = document["rois"]
    assert roi["voxel_count"] == 74 and roi["not_computable"] is None
    assert list(roi["regions"]) == ["core"]  # ringWidthMm 0: no ring
    compared, failures = _failures(roi["regions"]["core"], reference)
    assert failures == []
    assert compared == EXPECTED_IBSI_FEATURES


def test_every_ibsi_feature_of_the_2_5d_configuration_matches_the_reference(phantom, reference):
    # pyradiomics' force2D merges in-plane matrices over slices: IBSI's 2.5D aggregation.
    settings = dataclasses.replace(load_parameter_file(PARAMETERS), force2D=True)
    report = features_from_nifti(*phantom, settings)
    core = report.rois[0].features["core"]
    assert "rlm_lgre_2_5D_avg" in core and "rlm_lgre_3D_avg" not in core
    compared, failures = _failures(core, reference)
    assert failures == []
    assert compared == EXPECTED_IBSI_FEATURES


def test_pyradiomics_axis_lengths_alone_would_fail_ibsi(phantom, reference):
    # The N - 1 correction (service.scoring.features) is what makes the minor and least axes pass.
    report = features_from_nifti(*phantom, load_parameter_file(PARAMETERS))
    core = report.rois[0].features["core"]
    factor = math.sqrt(74 / 73)
    for tag in ("morph_pca_min_axis", "morph_pca_least_axis"):
        expected, tolerance = reference[tag]
        uncorrected = _three_significant_figures(core[tag] / factor)
        assert abs(uncorrected - expected) > tolerance
