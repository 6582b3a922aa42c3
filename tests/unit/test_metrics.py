"""Labelled counters exist at 0 from a role's start, so that the first failure ever is an
increase a rate-based alert sees (deploy/prometheus/alerts.yaml); the ingest tells whether its
scorer is up, how long its oldest study has been in each state, and how much room its var_dir's volume has left. The ingest is built for real (index, outbox, destinations from the configuration)
and its /metrics scraped over HTTP; nothing is started but the HTTP endpoint.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.roles.ingest import Ingest
from service.config import load_config
from service.ingest.index import InstanceRecord
from service.observability import (INGEST_REGISTRY, INSTANCE_REJECTION_REASONS, LESION_OUTCOMES,
                                   PRIOR_LOOKUP_OUTCOMES, QUEUE_DEPTH, QUEUE_OLDEST, SCORER_REGISTRY, SCORER_UP,
                                   STUDY_FAILURE_KINDS, build_labels, initialise_scorer_metrics,
                                   watch_var_dir)
from tests.support.processes import free_port


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


@pytest.fixture
def ingest(tmp_path: Path) -> Iterator[Ingest]:
    config = load_config(environ={
        "RCDS_VAR_DIR": str(tmp_path / "var"), "RCDS_HTTP_HOST": "127.0.0.1", "RCDS_HTTP_PORT": "0",
        "RCDS_SCORER_ADDRESS": f"127.0.0.1:{free_port()}",  # nobody listens: the scorer is down
        "RCDS_PACS_HOST": "127.0.0.1", "RCDS_STOW_URL": "http://127.0.0.1:9/dicom-web",
        "RCDS_FHIR_BASE_URL": "http://127.0.0.1:9/fhir"})
    ingest = Ingest(config)
    ingest.http.start()
    yield ingest
    ingest.http.stop()
    ingest.outbox.stop()
    ingest.scorer.close()
    ingest.index.close()
    # The registry is the process's: its gauges must not keep asking a closed index and scorer.
    states = ("receiving", "processing")
    for gauge in (*(metric.labels(state) for metric in (QUEUE_DEPTH, QUEUE_OLDEST) for state in states), SCORER_UP):
        gauge.set_function(lambda: 0.0)


def _failure_series(destinations: tuple[str, ...]) -> list[tuple[str, dict[str, str]]]:
    expected = [("rcds_studies_failed_total", {"kind": kind}) for kind in STUDY_FAILURE_KINDS]
    expected += [("rcds_prior_lookups_total", {"outcome": outcome}) for outcome in PRIOR_LOOKUP_OUTCOMES]
    expected += [("rcds_instances_rejected_total", {"reason": reason}) for reason in INSTANCE_REJECTION_REASONS]
    for destination in destinations:
        expected += [("rcds_outputs_failed_total", {"destination": destination}),
                     ("rcds_outputs_delivered_total", {"destination": destination})]
    return expected


def _scrape(ingest: Ingest) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The ingest's /metrics, over HTTP as Prometheus reads it."""
    with urllib.request.urlopen(f"http://127.0.0.1:{ingest.http.port}/metrics", timeout=10) as answer:
        return _samples(answer.read().decode())


def test_the_ingest_exports_every_failure_series(ingest: Ingest) -> None:
    """Every series is there from the start (its value is this test process's: other tests in
    the process count into the same registry; the next test checks the zeros in a fresh one)."""
    samples = _scrape(ingest)
    for name, labels in _failure_series(("pacs", "pacs-stow", "fhir")):
        assert samples.get((name, tuple(sorted(labels.items())))) is not None, (name, labels)
    assert samples[("rcds_scorer_up", ())] == 0.0
    assert samples[("rcds_queue_depth", (("state", "receiving"),))] == 0.0


def test_the_oldest_study_per_state_is_read_from_the_index_at_each_scrape(ingest: Ingest) -> None:
    """Its age in seconds, from the study's first instance while it is received, 0 with none."""
    def scrape() -> dict[str, float]:
        samples = _scrape(ingest)
        return {state: samples[("rcds_queue_oldest_seconds", (("state", state),))] for state in ("receiving", "processing")}

    assert scrape() == {"receiving": 0.0, "processing": 0.0}
    ingest.index.add_instance(InstanceRecord("1.2.3.1", "1.2.840.10008.5.1.4.1.1.2", "1.2.3", "1.2.3.2", "CT", "1.2.3.9",
                                             (0.0,), Path("/spool/1.2.3.1.dcm"), time.time() - 600))
    ages = scrape()
    assert 600 <= ages["receiving"] < 660 and ages["processing"] == 0.0


# What other processes on the machine may write or delete on the same volume between the
# test's statvfs calls and the scrape's.
OTHER_WRITERS_BYTES = 64 * 2**20


def test_the_var_dir_volume_is_read_at_each_scrape(ingest: Ingest) -> None:
    """Its size and the bytes an unprivileged process may still write (f_bavail: on this machine
    far fewer than f_bfree), as statvfs gives them to the test around the scrape."""
    var_dir = ingest.config.var_dir
    before = os.statvfs(var_dir)
    samples = _scrape(ingest)
    after = os.statvfs(var_dir)
    assert samples[("rcds_var_dir_size_bytes", ())] == before.f_blocks * before.f_frsize > 0
    free = [stat.f_bavail * stat.f_frsize for stat in (before, after)]
    assert min(free) - OTHER_WRITERS_BYTES <= samples[("rcds_var_dir_free_bytes", ())] <= max(free) + OTHER_WRITERS_BYTES


def test_the_var_dir_volume_counts_blocks_as_posix_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of f_frsize bytes, not f_bsize, and the reserved blocks left out of what is free:
    FAKED statvfs answer, since no file system at hand has a fragment size unlike its block size
    and reserved blocks on cue."""
    answer = os.statvfs_result((4096, 512, 1000, 600, 500, 0, 0, 0, 0, 255))  # bsize, frsize, blocks, bfree, bavail...
    monkeypatch.setattr("service.observability.os.statvfs", lambda path: answer)
    watch_var_dir(tmp_path)
    assert INGEST_REGISTRY.get_sample_value("rcds_var_dir_size_bytes") == 1000 * 512
    assert INGEST_REGISTRY.get_sample_value("rcds_var_dir_free_bytes") == 500 * 512


def test_a_var_dir_that_cannot_be_read_is_unknown_and_the_rest_still_scraped(ingest: Ingest, tmp_path: Path) -> None:
    watch_var_dir(tmp_path / "removed")
    samples = _scrape(ingest)
    assert math.isnan(samples[("rcds_var_dir_free_bytes", ())]) and math.isnan(samples[("rcds_var_dir_size_bytes", ())])
    assert samples[("rcds_queue_depth", (("state", "receiving"),))] == 0.0


def test_a_fresh_process_exports_them_at_zero() -> None:
    code = ("from prometheus_client import generate_latest; "
            "from service.observability import INGEST_REGISTRY, initialise_ingest_metrics; "
            "initialise_ingest_metrics(['pacs', 'fhir']); print(generate_latest(INGEST_REGISTRY).decode())")
    samples = _samples(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    for name, labels in _failure_series(("pacs", "fhir")):
        assert samples.get((name, tuple(sorted(labels.items())))) == 0.0, (name, labels)


def test_the_scorer_exports_every_lesion_outcome_at_zero() -> None:
    initialise_scorer_metrics({})
    for outcome in LESION_OUTCOMES:
        assert SCORER_REGISTRY.get_sample_value("rcds_scorer_lesions_total", {"outcome": outcome}) is not None


def test_build_information_names_each_engine_by_its_distribution_as_a_label_name_may() -> None:
    labels = build_labels({"pyradiomics-bhklab": "3.1.1", "SimpleITK": "2.4.0", "numpy": "2.1.0"})
    assert {name: labels[name] for name in ("pyradiomics_bhklab", "simpleitk", "numpy")} == {
        "pyradiomics_bhklab": "3.1.1", "simpleitk": "2.4.0", "numpy": "2.1.0"}
    assert set(labels) == {"version", "python", "pyradiomics_bhklab", "simpleitk", "numpy"}
