"""The two roles the Helm chart deploys, as separate processes: `radiomics-cds ingest` with two
`radiomics-cds scorer` processes behind one gRPC target (round robin). The CT + SEG case (five
segments, five lesions) is sent by dcmtk's storescu; its lesions are scored on both scorers.

Also here: graceful shutdown on SIGTERM (listener closed at once, the study in flight finished,
a restart resumes) and /metrics of both roles, parsed with prometheus-client's own parser and
checked for patient data in labels.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom import Dataset
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import require_tool
from tests.integration.test_dicom_security import CLI, REPO, Service
from tests.support.processes import LOOPBACK, free_port, stop_process, wait_until

pytestmark = [pytest.mark.external, pytest.mark.timeout(400)]

SEGMENTS = 5  # partial_overlaps.dcm: five overlapping segments, one lesion each


def _metrics(http_port: int) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, by prometheus-client's parser."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{http_port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


class Scorer:
    """`radiomics-cds scorer` on loopback with its own gRPC and HTTP ports."""

    def __init__(self, directory: Path) -> None:
        self.grpc_port, self.http_port = free_port(), free_port()
        env = {**os.environ, "RCDS_SCORER_ADDRESS": f"{LOOPBACK}:{self.grpc_port}", "RCDS_HTTP_HOST": LOOPBACK,
               "RCDS_HTTP_PORT": str(self.http_port), "RCDS_SCORER_WORKERS": "1"}
        directory.mkdir(parents=True, exist_ok=True)
        self.log_path = directory / f"scorer-{self.grpc_port}.log"
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(CLI + ["scorer"], env=env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self._ready, 90, "a scorer to answer /readyz")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"scorer exited: {self.log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{self.http_port}/readyz", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def lesions(self) -> float:
        return sum(value for (name, _), value in _metrics(self.http_port).items() if name == "rcds_scorer_lesions_total")

    def stop(self) -> None:
        stop_process(self.process, 40)
        self.log.close()


@pytest.fixture(scope="module")
def scorers(tmp_path_factory) -> Iterator[list[Scorer]]:
    directory = tmp_path_factory.mktemp("scorers")
    running = [Scorer(directory), Scorer(directory)]
    yield running
    for scorer in running:
        scorer.stop()


def _status(service: Service) -> dict[str, str]:
    out = subprocess.run(CLI + ["status"], env=service.env, cwd=REPO, capture_output=True, text=True, check=True)
    return {line.split()[1]: line.split()[2] for line in out.stdout.splitlines() if len(line.split()) >= 3}


def _send(service: Service, ct: Path, seg: Path) -> None:
    """The CT with dcmtk's storescu, the SEG with our pynetdicom sender (dcmtk 3.6.7's storescu
    proposes no presentation context for Segmentation Storage)."""
    sent = subprocess.run([require_tool("storescu"), "-aec", "RADIOMICS_CDS", "+sd", "+r", LOOPBACK,
                           str(service.dicom_port), str(ct)], capture_output=True, text=True, timeout=120)
    assert sent.returncode == 0, sent.stdout + sent.stderr + service.read_log()
    sent = subprocess.run(CLI + ["send", "--port", str(service.dicom_port), str(seg)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert sent.returncode == 0, sent.stdout + sent.stderr + service.read_log()


def _ct_seg_study(data_dir: Path) -> tuple[list[Path], str, Dataset]:
    ct_seg = data_dir / "ct-seg"
    header = pydicom.dcmread(ct_seg / "ct" / "01.dcm", stop_before_pixels=True)
    return [ct_seg / "ct", ct_seg / "partial_overlaps.dcm"], str(header.StudyInstanceUID), header


def test_lesions_of_one_study_are_scored_on_both_scorers(tmp_path, scorers, data_dir):
    target = "ipv4:" + ",".join(f"{LOOPBACK}:{s.grpc_port}" for s in scorers)
    before = [s.lesions() for s in scorers]
    service = Service(tmp_path / "var", command="ingest", scorer_address=target, quiet_seconds=2)
    try:
        paths, study_uid, header = _ct_seg_study(data_dir)
        _send(service, *paths)
        wait_until(lambda: _status(service).get(study_uid) in ("done", "failed"), 240, "the study to be scored")
        assert _status(service)[study_uid] == "done", service.read_log()
        scored = [s.lesions() - b for s, b in zip(scorers, before, strict=True)]
        assert sum(scored) == SEGMENTS and all(n >= 1 for n in scored), scored

        ingest = _metrics(service.http_port)
        assert ingest[("rcds_instances_received_total", (("kind", "ct"),))] == 3
        assert ingest[("rcds_instances_received_total", (("kind", "seg"),))] == 1
        assert ingest[("rcds_studies_completed_total", ())] == 1
        patient = {str(header.PatientID), str(header.PatientName)} - {""}
        for metrics in (ingest, *(_metrics(s.http_port) for s in scorers)):
            labels = {value for _, sample_labels in metrics for _, value in sample_labels}
            assert not any(p in value for p in patient for value in labels), labels
    finally:
        service.stop()


def _state(var_dir: Path, study_uid: str) -> str | None:
    """The study's state straight from the index (fast enough to catch a study being scored)."""
    with sqlite3.connect(f"file:{var_dir / 'index.sqlite'}?mode=ro", uri=True, timeout=5) as db:
        row = db.execute("SELECT state FROM studies WHERE study_instance_uid = ?", (study_uid,)).fetchone()
    return row[0] if row else None


def _deliveries(var_dir: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(f"file:{var_dir / 'outbox.sqlite'}?mode=ro", uri=True) as db:
        return db.execute("SELECT state, attempts FROM deliveries WHERE destination = 'pacs'").fetchall()


def test_sigterm_closes_the_listener_finishes_the_study_and_a_restart_resumes(tmp_path, scorers, data_dir):
    """SIGTERM while a study is scored (STS_019: a 512 x 512 CT, several seconds of work): new
    associations are refused at once, the study is finished and its outputs written, the pending
    delivery (the PACS is down) stays in the outbox; the restarted ingest does not score it again
    and goes on trying the delivery."""
    target = "ipv4:" + ",".join(f"{LOOPBACK}:{s.grpc_port}" for s in scorers)
    var_dir = tmp_path / "var"
    settings = {"scorer_address": target, "quiet_seconds": 2, "pacs_host": LOOPBACK, "pacs_port": free_port(),
                "delivery_initial_backoff_seconds": 1}
    service = Service(var_dir, command="ingest", **settings)
    sts019 = data_dir / "ct-rtstruct" / "STS_019"
    study_uid = str(pydicom.dcmread(next(sts019.rglob("*.dcm")), stop_before_pixels=True).StudyInstanceUID)
    sent = subprocess.run([require_tool("storescu"), "-aec", "RADIOMICS_CDS", "+sd", "+r", LOOPBACK,
                           str(service.dicom_port), str(sts019)], capture_output=True, text=True, timeout=120)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    wait_until(lambda: (var_dir / "index.sqlite").exists() and _state(var_dir, study_uid) == "processing", 120,
               "the study to be in processing")
    service.process.send_signal(signal.SIGTERM)
    wait_until(lambda: "stopping: DICOM listener closed" in service.read_log(), 30, "ingest to close its listener")
    assert service.process.poll() is None, "ingest exited before finishing the study"
    assert not service.associate().is_established  # still finishing the study, taking nothing new
    assert service.process.wait(timeout=120) == 0, service.read_log()
    service.log.close()
    assert _status(service)[study_uid] == "done", service.read_log()
    assert len(list((var_dir / "outbox").glob("*.dcm"))) == 1
    [(state, attempts)] = _deliveries(var_dir)
    assert state == "pending"

    again = Service(var_dir, command="ingest", **settings)
    try:
        wait_until(lambda: _deliveries(var_dir)[0][1] > attempts, 60, "the restarted outbox to try the PACS again")
        assert _status(again)[study_uid] == "done"
        assert len(list((var_dir / "outbox").glob("*.dcm"))) == 1
        assert " ready: " not in again.read_log() and " done: " not in again.read_log()  # not scored again
    finally:
        again.stop()
