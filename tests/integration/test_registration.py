"""Prior and current studies in different Frames of Reference (docs/method.md section 5, service.registration).

The follow-up is STS_019 moved by a known rigid transform (5 degrees about z through the
lesion, 16 mm and -12 mm in-plane: 20 mm) into a new Frame of Reference, with its contour moved
by the same transform and renamed, so that only geometry can match it
(tests/support/moved_study.py). Expected positions are the transform applied here to the
baseline contour points.

Tolerance of the registration: 2 mm at the lesion centroid. The final pyramid level is 2 mm
and the pixels are 0.98 mm (slices 3.27 mm), so 2 mm is one final-level voxel; it is also five
times below the smallest matching gate (tau_min = 10 mm), so a registration within it cannot
change a match.
"""

import json
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from service.imaging.volume import read_ct_directory
from service.registration import register_prior_ct
from service.spatial_registration import registration_mapping
from tests.support.moved_study import contour_points, rigid_about_z, spatial_registration, write_moved_follow_up
from tests.support.sr_groups import lesion_groups

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def moved(sts019, tmp_path_factory):
    """(baseline RTSTRUCT, follow-up CT dir, follow-up RTSTRUCT, prior -> current matrix, root)."""
    root = tmp_path_factory.mktemp("moved")
    baseline_rs = sts019 / "mask" / "RS.dcm"
    transform = rigid_about_z(5.0, (16.0, -12.0, 0.0), contour_points(baseline_rs).mean(axis=0))
    ct, rtstruct = write_moved_follow_up(sts019 / "image", baseline_rs, root / "study", transform,
                                         study_date="20020301", roi_name="Lesion A")
    return baseline_rs, ct, rtstruct, transform, root


def _expected(transform: np.ndarray, point: np.ndarray) -> np.ndarray:
    return transform[:3, :3] @ point + transform[:3, 3]


def test_rigid_registration_recovers_the_transform(moved, sts019):
    baseline_rs, ct, _, transform, _ = moved
    outcome = register_prior_ct(read_ct_directory(ct), read_ct_directory(sts019 / "image"))
    assert outcome.accepted and outcome.metric is not None and outcome.mapping is not None
    centroid = contour_points(baseline_rs).mean(axis=0)
    assert np.linalg.norm(outcome.mapping.apply(centroid) - _expected(transform, centroid)) < 2.0
    assert outcome.mapping.registration == f"rigid registration, metric {outcome.metric:.3f}"


def test_the_registration_is_deterministic(moved, sts019):
    _, ct, _, _, _ = moved
    current, prior = read_ct_directory(ct), read_ct_directory(sts019 / "image")
    first, second = register_prior_ct(current, prior), register_prior_ct(current, prior)
    assert first.mapping is not None and second.mapping is not None
    # equal to rounding (the smoothing filters may split work across threads; not the optimizer)
    np.testing.assert_allclose(first.mapping.matrix, second.mapping.matrix, rtol=0, atol=1e-9)
    assert first.mapping.registration == second.mapping.registration


def test_unrelated_images_are_rejected(moved, sts019):
    _, ct, _, _, _ = moved
    current = read_ct_directory(ct)
    noise = np.random.default_rng(0).uniform(-1000, 1000, current.hu.shape).astype(np.float32)
    prior = read_ct_directory(sts019 / "image")
    prior.hu = noise
    outcome = register_prior_ct(current, prior)
    assert not outcome.accepted and outcome.reason


def test_a_spatial_registration_object_gives_the_exact_mapping(moved, sts019, tmp_path):
    _, ct, _, transform, _ = moved
    path = tmp_path / "REG.dcm"
    prior_frame = read_ct_directory(sts019 / "image").frame_of_reference_uid
    spatial_registration(path, ct, prior_frame, transform)
    sro = pydicom.dcmread(path)
    mapping = registration_mapping([sro], prior_frame, str(sro.FrameOfReferenceUID))
    assert mapping is not None
    np.testing.assert_allclose(np.asarray(mapping.matrix).reshape(4, 4), transform, atol=1e-8)
    assert registration_mapping([sro], "1.2.3.4", str(sro.FrameOfReferenceUID)) is None


def _score(ct: Path, rtstruct: Path, out: Path, *extra: str) -> None:
    run = subprocess.run([sys.executable, "-m", "service.cli", "score", "--ct", str(ct), "--rtstruct", str(rtstruct),
                          "--out", str(out), *extra], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr


def _lesion(directory: Path) -> tuple[str, dict]:
    (sr,) = directory.glob("*.dcm")
    (bundle,) = directory.glob("*.fhir.json")
    (group,) = lesion_groups(hd.sr.srread(sr).content)
    return str(group.tracking_uid), json.loads(bundle.read_text())


def _match_method(bundle: dict) -> list[str]:
    return [component.get("valueString") for entry in bundle["entry"]
            for component in entry["resource"].get("component", [])
            if any(c.get("code") == "MATCHMETH" for c in component["code"].get("coding", []))]


def test_score_prior_with_the_prior_ct_matches_by_geometry(moved, sts019):
    baseline_rs, ct, rtstruct, _, root = moved
    _score(sts019 / "image", baseline_rs, root / "baseline")
    _score(ct, rtstruct, root / "follow-up", "--prior", str(root / "baseline"), "--prior-ct", str(sts019 / "image"))
    baseline_uid, _ = _lesion(root / "baseline")
    follow_uid, bundle = _lesion(root / "follow-up")
    assert follow_uid == baseline_uid
    assert _match_method(bundle) == ["geometry"]


def test_score_prior_with_a_spatial_registration_object_matches_by_geometry(moved, sts019, tmp_path):
    baseline_rs, ct, rtstruct, transform, root = moved
    if not (root / "baseline").exists():
        _score(sts019 / "image", baseline_rs, root / "baseline")
    study = tmp_path / "ct"
    study.mkdir()
    for path in ct.iterdir():
        (study / path.name).symlink_to(path)
    spatial_registration(study / "REG.dcm", ct, read_ct_directory(sts019 / "image").frame_of_reference_uid, transform)
    _score(study, rtstruct, tmp_path / "follow-up", "--prior", str(root / "baseline"))
    follow_uid, bundle = _lesion(tmp_path / "follow-up")
    assert follow_uid == _lesion(root / "baseline")[0]
    assert _match_method(bundle) == ["geometry"]
