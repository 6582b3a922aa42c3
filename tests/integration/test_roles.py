"""The two roles the Helm chart deploys, as separate processes: `radiomics-cds ingest` with two
`radiomics-cds scorer` processes behind one gRPC target (round robin). The CT + SEG case (five
segments, five lesions) is sent by dcmtk's storescu; its lesions are scored on both scorers.

Also here: graceful shutdown on SIGTERM (listener closed at once, the study in flight finished,
a restart resumes) and /metrics of both roles, parsed with prometheus-client's own parser and
checked for patient data in labels.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import Dataset

from service.errors import ScorerUnavailable
from service.imaging.crops import lesion_crop
from service.model import CtSeries, ImageGeometry, LesionMask
from service.scoring.client import GrpcScorer
from service.scoring.settings import ExtractionSettings
from tests.support.processes import LOOPBACK, free_port, wait_until
from tests.support.service import CLI, REPO, RunningService, Scorer, scrape_metrics

pytestmark = [pytest.mark.external, pytest.mark.timeout(400)]

SEGMENTS = 5  # partial_overlaps.dcm: five overlapping segments, one lesion each


@pytest.fixture(scope="module")
def scorers(tmp_path_factory) -> Iterator[list[Scorer]]:
    directory = tmp_path_factory.mktemp("scorers")
    running = [Scorer(directory), Scorer(directory)]
    yield running
    for scorer in running:
        scorer.stop()


def _send(service: RunningService, ct: Path, seg: Path) -> None:
    """The CT with dcmtk's storescu, the SEG with our pynetdicom sender (dcmtk 3.6.7's storescu
    proposes no presentation context for Segmentation Storage)."""
    sent = service.storescu(ct)
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
    service = RunningService(tmp_path / "var", "ingest", scorer_address=target, quiet_seconds=2)
    try:
        paths, study_uid, header = _ct_seg_study(data_dir)
        _send(service, *paths)
        state, detail = service.wait_for(study_uid, timeout_s=240)
        assert state == "done", detail
        scored = [s.lesions() - b for s, b in zip(scorers, before, strict=True)]
        assert sum(scored) == SEGMENTS and all(n >= 1 for n in scored), scored

        ingest = service.metrics()
        assert ingest[("rcds_instances_received_total", (("kind", "ct"),))] == 3
        assert ingest[("rcds_instances_received_total", (("kind", "seg"),))] == 1
        assert ingest[("rcds_studies_completed_total", ())] == 1
        patient = {str(header.PatientID), str(header.PatientName)} - {""}
        for metrics in (ingest, *(scrape_metrics(s.http_port) for s in scorers)):
            labels = {value for _, sample_labels in metrics for _, value in sample_labels}
            assert not any(p in value for p in patient for value in labels), labels
    finally:
        service.stop()


def test_an_ingest_that_reached_its_scorer_keeps_receiving_while_it_is_down(tmp_path, data_dir):
    """Once it has reached its scorer, an ingest stays ready when the scorer goes away (its
    /readyz gates a rollout, not a scorer outage, which would take every ingest pod out of the
    DICOM Service at once): it reports the outage in rcds_scorer_up, acknowledges a study sent
    meanwhile into its spool, and scores it when a scorer is back at the address."""
    scorer = Scorer(tmp_path / "scorer")
    service = RunningService(tmp_path / "var", "ingest", scorer_address=f"{LOOPBACK}:{scorer.grpc_port}",
                             quiet_seconds=1)
    try:
        wait_until(lambda: service.readyz() == (200, "ready\n"), 60, "the ingest to reach its scorer")
        scorer.stop()
        wait_until(lambda: service.metrics()[("rcds_scorer_up", ())] == 0, 60, "the outage to show")
        assert service.readyz() == (200, "ready\n")
        paths, study_uid, _ = _ct_seg_study(data_dir)
        _send(service, *paths)  # acknowledged: storescu and send exit 0 only on Success
        assert service.metrics()[("rcds_instances_received_total", (("kind", "ct"),))] == 3
        wait_until(lambda: "scorer unavailable" in service.read_log(), 60, "a scoring attempt to meet the outage")
        scorer = Scorer(tmp_path / "scorer", grpc_port=scorer.grpc_port)
        state, detail = service.wait_for(study_uid, timeout_s=240)
        assert state == "done", detail
    finally:
        service.stop()
        scorer.stop()


def test_sigterm_closes_the_listener_finishes_the_study_and_a_restart_resumes(tmp_path, scorers, data_dir):
    """SIGTERM while a study is scored (STS_019: a 512 x 512 CT, several seconds of work): new
    associations are refused at once, the study is finished and its outputs written, the pending
    delivery (the PACS is down) stays in the outbox; the restarted ingest does not score it again
    and goes on trying the delivery."""
    target = "ipv4:" + ",".join(f"{LOOPBACK}:{s.grpc_port}" for s in scorers)
    var_dir = tmp_path / "var"
    settings = {"scorer_address": target, "quiet_seconds": 2, "pacs_host": LOOPBACK, "pacs_port": free_port(),
                "delivery_initial_backoff_seconds": 1}
    service = RunningService(var_dir, "ingest", **settings)
    sts019 = data_dir / "ct-rtstruct" / "STS_019"
    study_uid = str(pydicom.dcmread(next(sts019.rglob("*.dcm")), stop_before_pixels=True).StudyInstanceUID)
    sent = service.storescu(sts019)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    wait_until(lambda: service.study_state(study_uid) == "processing", 120,
               "the study to be in processing")
    service.process.send_signal(signal.SIGTERM)
    wait_until(lambda: "stopping: DICOM listener closed" in service.read_log(), 30, "ingest to close its listener")
    assert service.process.poll() is None, "ingest exited before finishing the study"
    assert not service.associate().is_established  # still finishing the study, taking nothing new
    assert service.process.wait(timeout=120) == 0, service.read_log()
    service.log.close()
    assert service.study_state(study_uid) == "done", service.read_log()
    assert len(list((var_dir / "outbox").glob("*.dcm"))) == 1
    [(state, attempts, _)] = service.deliveries("pacs")
    assert state == "pending"

    again = RunningService(var_dir, "ingest", **settings)
    try:
        wait_until(lambda: again.deliveries("pacs")[0][1] > attempts, 60, "the restarted outbox to try the PACS again")
        assert again.status()[study_uid][0] == "done"
        assert len(list((var_dir / "outbox").glob("*.dcm"))) == 1
        assert " ready: " not in again.read_log() and " done: " not in again.read_log()  # not scored again
    finally:
        again.stop()


def test_a_scorer_whose_http_port_is_taken_says_so_and_exits(tmp_path):
    """Two roles on one host with the default http_port: the second stops with a message naming
    the setting, not a traceback."""
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        env = {**os.environ, "RCDS_SCORER_ADDRESS": f"{LOOPBACK}:{free_port()}", "RCDS_HTTP_HOST": LOOPBACK,
               "RCDS_HTTP_PORT": str(taken.getsockname()[1])}
        ended = subprocess.run(CLI + ["scorer"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert ended.returncode == 3, ended.stderr
    assert "http_port: cannot listen on" in ended.stderr and "Traceback" not in ended.stderr


def _large_lesion_crop():
    """A 260 mL sphere in noisy soft tissue: several seconds of full-panel work, so a SIGTERM can
    arrive while it is being scored."""
    shape, spacing = (90, 150, 150), (0.8, 0.8, 1.0)  # (z, y, x) voxels; (x, y, z) mm
    hu = np.random.default_rng(11).normal(40, 30, shape).astype(np.float32)
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    lesion = ((x - 75) * spacing[0]) ** 2 + ((y - 75) * spacing[1]) ** 2 + ((z - 45) * spacing[2]) ** 2 < 40.0 ** 2
    hu[lesion] += 30
    geometry = ImageGeometry(size=(shape[2], shape[1], shape[0]), spacing=spacing, origin=(0.0, 0.0, 0.0))
    ct = CtSeries(hu, geometry, "1.2.3", "1.2.3.1", "1.2.3.2", "1.2.840.10008.5.1.4.1.1.2",
                  tuple(f"1.2.3.9.{i}" for i in range(shape[0])), 120.0)
    low, high = np.argwhere(lesion).min(axis=0), np.argwhere(lesion).max(axis=0) + 1
    mask = LesionMask(1, "large", "RTSTRUCT", "1.2.840.10008.5.1.4.1.1.481.3", "1.2.3.4", tuple(int(v) for v in low),
                      lesion[low[0]:high[0], low[1]:high[1], low[2]:high[2]])
    return lesion_crop(ct, mask, ExtractionSettings()), float(lesion.sum()) * 0.8 * 0.8 * 1.0 / 1000


def test_a_batch_cut_by_the_grace_period_scores_no_further_lesion_and_the_scorer_exits(tmp_path):
    """SIGTERM while the first of six large lesions of one ScoreLesions call is scored, with a
    1 s grace period (the six take several seconds together): the call is cut when the grace
    period ends, so the client gets a retryable error (its study is retried elsewhere), and the
    servicer, which cannot stop pyradiomics mid-lesion, finishes the lesion in hand and scores
    none after it: the log says how many were left, and the process exits 0 rather than running
    on until a SIGKILL (the termination grace period) ends it."""
    scorer = Scorer(tmp_path, feature_panel="full", scorer_grace_seconds=1)
    crop, _ = _large_lesion_crop()
    batch = [replace(crop, number=number) for number in range(1, 7)]
    try:
        with ThreadPoolExecutor(1) as pool, GrpcScorer(f"{LOOPBACK}:{scorer.grpc_port}") as client:
            in_flight = pool.submit(client.score_batch, batch)
            wait_until(lambda: scorer.in_progress() == 1, 30, "the call to reach the scorer")
            scorer.process.send_signal(signal.SIGTERM)
            with pytest.raises(ScorerUnavailable):
                in_flight.result(timeout=120)
        assert scorer.process.wait(timeout=120) == 0
        left = re.search(r"(\d+) of 6 lesions not scored", scorer.log_path.read_text())
        assert left is not None and 1 <= int(left.group(1)) <= 5  # the first was in hand at SIGTERM
    finally:
        scorer.stop()


def test_a_scorer_on_sigterm_finishes_the_call_in_flight_and_takes_no_new_one(tmp_path):
    """SIGTERM while a lesion is being scored: the call completes with its values (within
    scorer_grace_seconds), the process exits 0, and nothing is taken afterwards. (Its /readyz 503
    is not asserted: while pyradiomics computes, the HTTP thread may not get to answer before
    the call is done, which made such a check flaky.)"""
    scorer = Scorer(tmp_path, feature_panel="full")
    crop, volume_ml = _large_lesion_crop()
    try:
        with ThreadPoolExecutor(1) as pool, GrpcScorer(f"{LOOPBACK}:{scorer.grpc_port}") as client:
            in_flight = pool.submit(client.score_batch, [crop])
            wait_until(lambda: scorer.in_progress() == 1, 30, "the call to reach the scorer")
            scorer.process.send_signal(signal.SIGTERM)
            assert not in_flight.done(), "the lesion was scored before SIGTERM: make it larger"
            (finished,) = in_flight.result(timeout=120)  # not cut off: completed, with its values
            assert finished.volume_ml == pytest.approx(volume_ml, rel=0.05)
            assert finished.features["core"] and finished.features["ring"]
        assert scorer.process.wait(timeout=60) == 0
        assert "stopping: no new calls" in scorer.log_path.read_text()
        with GrpcScorer(f"{LOOPBACK}:{scorer.grpc_port}", timeout_s=10) as late:
            with pytest.raises(ScorerUnavailable) as refused:
                late.score_batch([crop])
        assert refused.value.code == "UNAVAILABLE"
    finally:
        scorer.stop()
