"""An independent reader of our SR: dcmqi's tid1500reader (PyPI dcmqi, DCMTK-based).

tid1500reader keeps a Measurement Method only per measurement group, not per measurement. With
core and ring features in one group, a feature measured in both regions came back as two values
with nothing to tell them apart. `score --out` (full feature panel, so most features exist in
both regions) on the real RTSTRUCT case and the real SEG liver case must come back from
tid1500reader with every core and every ring feature distinct, under the region its group
states, with the value highdicom reads from the same SR (where each feature also states its region
itself). The core group's lesion-level values (sizes, score, time point) come back under the
core, as the lesion's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import pytest

from tests.support.external import require_data, require_python_tool

pytestmark = pytest.mark.external

REPO = Path(__file__).resolve().parents[2]
CORE, RING = "RGNCORE", "RGNRING"

Key = tuple[str, str, str | None]
"""(region code, feature code, derivation code): what tells one feature value from another."""


@pytest.fixture(scope="module", params=["rtstruct", "seg"])
def scored_sr(request: pytest.FixtureRequest, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if request.param == "rtstruct":
        case = require_data(data_dir / "ct-rtstruct" / "STS_002")
        inputs = ["--ct", str(case / "image"), "--rtstruct", str(case / "mask" / "RS.dcm")]
    else:
        case = require_data(data_dir / "ct-seg")
        inputs = ["--ct", str(case / "ct"), "--seg", str(case / "liver.dcm")]
    out = tmp_path_factory.mktemp(f"tid1500-{request.param}")
    config = out.parent / f"{out.name}.yaml"
    config.write_text("feature_panel: full\n")
    run = subprocess.run([sys.executable, "-m", "service.cli", "score", "--config", str(config), *inputs,
                          "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    (sr,) = out.glob("*.dcm")
    return sr


def _by_dcmqi(sr: Path, tmp_path: Path) -> tuple[dict[Key, list[float]], list[dict]]:
    """Every measurement tid1500reader reports with a region, keyed by (its group's method, its
    quantity, its derivation); and the groups themselves."""
    output = tmp_path / "tid1500.json"
    run = subprocess.run([require_python_tool("tid1500reader", "pip install dcmqi==1.5.7"), "--inputDICOM", str(sr),
                          "--outputMetadata", str(output)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    groups = json.loads(output.read_text())["Measurements"]
    values: dict[Key, list[float]] = {}
    for group in groups:
        method = group.get("measurementMethod", {}).get("CodeValue")
        if method not in (CORE, RING):
            continue
        for item in group["measurementItems"]:
            derivation = item.get("derivationModifier", {}).get("CodeValue")
            values.setdefault((method, item["quantity"]["CodeValue"], derivation), []).append(float(item["value"]))
    return values, groups


def _by_highdicom(sr: Path) -> tuple[dict[Key, float], set[Key]]:
    """Every measurement of the lesion's groups as highdicom reads them, keyed by region (the
    group's method), name and derivation; and which of them are features (a feature states its
    region itself too, which must be its group's)."""
    values: dict[Key, float] = {}
    features: set[Key] = set()
    for group in hd.sr.srread(sr).content.get_volumetric_roi_measurement_groups():
        for m in group.get_measurements():
            key = (group.method.value, m.name.value, m.derivation.value if m.derivation is not None else None)
            assert key not in values, key
            values[key] = float(m.value)
            if m.method is not None:
                assert m.method == group.method, key
                features.add(key)
    return values, features


def test_tid1500reader_returns_every_core_and_ring_feature_distinctly(scored_sr: Path, tmp_path: Path) -> None:
    written, features = _by_highdicom(scored_sr)
    read, groups = _by_dcmqi(scored_sr, tmp_path)
    # The case this guards: most features are measured in both regions.
    in_both = {(name, derivation) for region, name, derivation in features if region == CORE} & {
        (name, derivation) for region, name, derivation in features if region == RING}
    assert len(in_both) > 50
    assert {key: len(found) for key, found in read.items() if len(found) != 1} == {}
    assert len(read) == len(written)
    assert {key: found[0] for key, found in read.items()} == {key: pytest.approx(value, rel=1e-9)
                                                            for key, value in written.items()}
    # One lesion: both region groups carry its Tracking Identifier and UID.
    regions = [g for g in groups if g.get("measurementMethod", {}).get("CodeValue") in (CORE, RING)]
    assert len(regions) == 2
    assert len({(g["TrackingIdentifier"], g["TrackingUniqueIdentifier"]) for g in regions}) == 1
