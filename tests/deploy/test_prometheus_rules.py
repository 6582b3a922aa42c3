"""The alert rules (deploy/prometheus/alerts.yaml) checked and unit-tested by the real promtool
(Debian `prometheus`): syntax and templates by `check rules`, and by `test rules` on
deploy/prometheus/alerts_test.yaml that each alert fires on the series it is about, after its
`for`, and stays quiet otherwise, including the first failure of a counter exported at 0."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.external import require_tool

pytestmark = pytest.mark.external
RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


@pytest.mark.parametrize("command", [["check", "rules", "alerts.yaml"], ["test", "rules", "alerts_test.yaml"]])
def test_promtool_accepts_the_rules(command: list[str]) -> None:
    promtool = require_tool("promtool")
    run = subprocess.run([promtool, *command], cwd=RULES_DIR, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout
