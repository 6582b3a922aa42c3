"""The Grafana dashboard (deploy/helm/radiomics-cds/files/grafana-dashboard.json) shows what the service exports.

A panel whose query names a metric the service does not export draws nothing, silently. So the
metric names of every query are compared with a scrape of both roles of a running `serve`;
every query is parsed by promtool (Prometheus's own PromQL parser, through `check rules`); the
JSON model is checked for what Grafana needs to lay it out and query it: unique panel ids, panels
inside the 24-column grid and not overlapping, a data source variable every panel uses, unique
refIds, every `$variable` defined.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.external import require_tool
from tests.support.processes import LOOPBACK, free_port
from tests.support.service import REPO, RunningService, scrape_metrics

DASHBOARD = REPO / "deploy" / "helm" / "radiomics-cds" / "files" / "grafana-dashboard.json"
PANEL_TYPES = {"row", "timeseries", "stat", "table"}  # Grafana's built-in panels this dashboard uses
# What Grafana puts in place of its variables before the query reaches Prometheus (any value of
# the right shape does for parsing).
SUBSTITUTES = {"$__rate_interval": "5m", "$job": ".*"}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
                "group_right", "inf", "nan"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in _panels(dashboard) for target in panel["targets"]]


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects: its identifiers once strings, label
    matchers, ranges and grouping clauses are taken out, except functions (followed by a
    parenthesis) and operators."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    return {name for name in re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b(?!\s*\()", text)
            if name.lower() not in PROMQL_WORDS}


def test_metric_names_are_read_from_expressions() -> None:
    """The extraction itself, on expressions whose metric names are known."""
    assert metric_names('sum by (kind) (rate(rcds_studies_failed_total{job=~"a|b"}[5m]))') == {
        "rcds_studies_failed_total"}
    assert metric_names("histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m]))) / on (job) y offset 1h") == {
        "x_bucket", "y"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[set[str]]:
    """Every sample name both roles of a running serve export (a PACS destination configured)."""
    service = RunningService(tmp_path_factory.mktemp("dashboard") / "var", "serve",
                             pacs_host=LOOPBACK, pacs_port=free_port())
    try:
        yield {name for port in (service.http_port, service.scorer_metrics_port)
               for name, _ in scrape_metrics(port)}
    finally:
        service.stop()


def test_every_query_names_only_metrics_the_service_exports(dashboard: dict[str, Any], exported: set[str]) -> None:
    used = set().union(*map(metric_names, _expressions(dashboard)))
    assert used and used <= exported, sorted(used - exported)


def _family(sample_name: str) -> str:
    return re.sub(r"_(?:total|bucket|count|sum|created)$", "", sample_name)


def test_every_metric_of_ours_is_on_the_dashboard(dashboard: dict[str, Any], exported: set[str]) -> None:
    """A family of ours (rcds_*) not shown is a signal an operator would not see."""
    ours = {_family(name) for name in exported if name.startswith("rcds_")}
    shown = {_family(name) for name in set().union(*map(metric_names, _expressions(dashboard)))}
    assert ours <= shown, sorted(ours - shown)


@pytest.mark.external
def test_promtool_parses_every_query(dashboard: dict[str, Any], tmp_path: Path) -> None:
    expressions = _expressions(dashboard)
    for name, value in SUBSTITUTES.items():
        expressions = [expression.replace(name, value) for expression in expressions]
    assert not [e for e in expressions if "$" in e], "a variable without a substitute"
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:query{i}", "expr": expression}
                                                       for i, expression in enumerate(expressions)]}]}
    (tmp_path / "queries.yaml").write_text(yaml.safe_dump(rules))
    checked = subprocess.run([require_tool("promtool"), "check", "rules", str(tmp_path / "queries.yaml")],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in checked.stdout


def test_panels_have_unique_ids_known_types_and_fit_the_grid(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    assert {panel["type"] for panel in dashboard["panels"]} <= PANEL_TYPES
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] >= 1 and grid["x"] + grid["w"] <= 24 and grid["h"] >= 1, panel["title"]
        mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_every_panel_queries_the_data_source_variable_with_unique_ref_ids(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in _panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert ref_ids and len(ref_ids) == len(set(ref_ids)), panel["title"]
        assert panel["title"] and panel["description"]


def test_every_variable_used_is_defined(dashboard: dict[str, Any]) -> None:
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    text = json.dumps(dashboard)
    used = set(re.findall(r"\$\{?([a-zA-Z_]\w*)", text)) - {"__rate_interval"}
    assert used <= defined, used - defined
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["uid"] and dashboard["title"]
