"""Each role exports its own metrics: `radiomics-cds serve` runs both, the ingest on http_port and
its scorer child on scorer_metrics_port; each scrape holds that role's series, the process's own
metrics and the build information, and none of the other role's series. promtool (Prometheus's
own linter) finds nothing to say about either scrape.
"""

from __future__ import annotations

import platform
import subprocess
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy
import pytest
import radiomics
import SimpleITK
from prometheus_client.parser import text_string_to_metric_families

from tests.support.external import require_tool
from tests.support.processes import LOOPBACK, free_port
from tests.support.service import CLI, REPO, RunningService, service_env

# The families of each role, as the README's metrics table lists them (not read from the code).
INGEST_FAMILIES = {"rcds_instances_received", "rcds_associations_rejected", "rcds_instances_rejected",
                   "rcds_studies_completed", "rcds_studies_failed", "rcds_scoring_seconds", "rcds_study_stage_seconds",
                   "rcds_prior_lookups", "rcds_prior_lookup_seconds",
                   "rcds_outputs_delivered",
                   "rcds_outputs_failed", "rcds_queue_depth", "rcds_queue_oldest_seconds", "rcds_var_dir_free_bytes",
                   "rcds_var_dir_size_bytes", "rcds_outbox_pending", "rcds_scorer_up", "rcds_spool_studies_removed",
                   "rcds_spool_removed_bytes"}
SCORER_FAMILIES = {"rcds_scorer_lesions", "rcds_scorer_lesion_seconds", "rcds_scorer_lesions_in_progress"}
PROCESS_FAMILIES = {"process_resident_memory_bytes", "process_cpu_seconds", "process_open_fds",
                    "process_start_time_seconds", "python_info", "rcds_build_info"}
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=10) as answer:
        return answer.read().decode()


def _families(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    return {family.name: [(sample.name, sample.labels, sample.value) for sample in family.samples]
            for family in text_string_to_metric_families(text)}


@pytest.fixture(scope="module")
def scrapes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """role -> its /metrics text, from one serve with a PACS destination (nobody listens there)
    and spool retention on (its sweep runs at start)."""
    service = RunningService(tmp_path_factory.mktemp("role-metrics") / "var", "serve",
                             pacs_host=LOOPBACK, pacs_port=free_port(), spool_retention_days=30)
    try:
        yield {"ingest": _scrape(service.http_port), "scorer": _scrape(service.scorer_metrics_port)}
    finally:
        service.stop()


def test_each_role_exports_its_own_series_and_not_the_others(scrapes: dict[str, str]) -> None:
    ingest, scorer = _families(scrapes["ingest"]), _families(scrapes["scorer"])
    assert INGEST_FAMILIES | PROCESS_FAMILIES <= set(ingest)
    assert SCORER_FAMILIES | PROCESS_FAMILIES <= set(scorer)
    assert not SCORER_FAMILIES & set(ingest)
    assert not INGEST_FAMILIES & set(scorer)
    # a PACS configured: its SR destination and its tumour-board page destination, each at 0
    assert sorted(ingest["rcds_outputs_failed"], key=str) == [
        ("rcds_outputs_failed_total", {"destination": name}, 0.0) for name in ("pacs", "pacs-summary")]


def test_each_role_runs_in_its_own_process(scrapes: dict[str, str]) -> None:
    """serve's scorer is a child process: its process metrics are its own."""
    ingest, scorer = _families(scrapes["ingest"]), _families(scrapes["scorer"])
    for families in (ingest, scorer):
        [(_, _, memory)] = families["process_resident_memory_bytes"]
        assert memory > 10e6  # a Python process with our imports
    [(_, _, ingest_start)] = ingest["process_start_time_seconds"]
    [(_, _, scorer_start)] = scorer["process_start_time_seconds"]
    assert scorer_start >= ingest_start  # serve starts its child


def test_build_information_names_the_versions_and_nothing_else(scrapes: dict[str, str]) -> None:
    [(name, ingest_labels, value)] = _families(scrapes["ingest"])["rcds_build_info"]
    assert (name, ingest_labels, value) == (
        "rcds_build_info", {"version": VERSION, "python": platform.python_version()}, 1.0)
    [(_, scorer_labels, _)] = _families(scrapes["scorer"])["rcds_build_info"]
    assert scorer_labels == {**ingest_labels, "pyradiomics_bhklab": str(radiomics.__version__),
                             "simpleitk": SimpleITK.Version_VersionString(), "numpy": numpy.__version__}


@pytest.mark.external
@pytest.mark.parametrize("role", ["ingest", "scorer"])
def test_promtool_finds_nothing_to_lint(scrapes: dict[str, str], role: str) -> None:
    checked = subprocess.run([require_tool("promtool"), "check", "metrics"], input=scrapes[role],
                             capture_output=True, text=True, timeout=60)
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")


def test_serve_refuses_one_port_for_both_roles(tmp_path: Path) -> None:
    env = service_env(tmp_path / "var")
    env["RCDS_SCORER_METRICS_PORT"] = env["RCDS_HTTP_PORT"]
    ended = subprocess.run(CLI + ["serve"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert ended.returncode == 3, ended.stderr
    assert f"radiomics-cds: scorer_metrics_port: {env['RCDS_HTTP_PORT']} is also http_port" in ended.stderr
    assert "Traceback" not in ended.stderr
