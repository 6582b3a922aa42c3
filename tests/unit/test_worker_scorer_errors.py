"""The worker and a scorer that does not score: an unavailable scorer sends the study back to
wait, claimed again only after a growing wait (PEER_RETRY_WAITS_S, about an hour in all), a
refusal fails it with the scorer's status and words. Both
scorers are real: a stopped gRPC server and an in-process scorer whose panel cannot feed the
signature."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.config import Config
from service.ingest.index import FAILED, RECEIVING, InstanceRecord, StudyIndex
from service.outputs.outbox import Outbox
from service.scorer import Scorer
from service.scoring.client import GrpcScorer
from service.scoring.in_process import InProcessScorer
from service.scoring.lesion import ScoringContext
from service.location import LocationRules
from service.scoring.panel import FeaturePanel, signature_panel
from service.scoring.server import build_server
from service.scoring.settings import ExtractionSettings
from service.scoring.signatures import load_signature
import time

from service.worker import PEER_RETRY_WAITS_S, StudyWorker
from tests.support import small_study

RECEIVED_AT = 1_000.0
LATER = RECEIVED_AT + 10_000.0  # past any quiet period: the study is ready


@pytest.fixture(scope="module")
def context() -> ScoringContext:
    signature = load_signature()
    return ScoringContext(ExtractionSettings(), signature, LocationRules(), signature_panel(signature))


@pytest.fixture(scope="module")
def stopped_grpc_scorer(context: ScoringContext) -> Iterator[Scorer]:
    server, port, _ = build_server(context, "127.0.0.1:0", workers=1)
    server.start()
    server.stop(grace=None).wait()
    with GrpcScorer(f"127.0.0.1:{port}", timeout_s=2) as scorer:
        yield scorer


def _received_study(config: Config, index: StudyIndex) -> None:
    """The small CT and its RTSTRUCT, stored and indexed as the listener leaves them."""
    datasets = [*small_study.ct_slices(), small_study.rtstruct()]
    for ds, path in zip(datasets, small_study.write(config.spool_dir / "study", datasets)):
        positions = (float(ds.ImagePositionPatient[2]),) if "ImagePositionPatient" in ds else ()
        index.add_instance(InstanceRecord(
            str(ds.SOPInstanceUID), str(ds.SOPClassUID), str(ds.StudyInstanceUID), str(ds.get("SeriesInstanceUID", "")),
            str(ds.Modality), small_study.FRAME_UID, positions, path, RECEIVED_AT,
        ))


def _process(tmp_path: Path, scorer: Scorer, earlier_attempts: int = 0) -> tuple[str, str | None]:
    """Process the study once after `earlier_attempts` interrupted ones; its (state, error)."""
    config = Config(var_dir=tmp_path / "var")
    index = StudyIndex(config.index_path)
    outbox = Outbox(config.var_dir / "outbox.sqlite", {})
    try:
        _received_study(config, index)
        for _ in range(earlier_attempts):
            assert index.claim(small_study.STUDY_UID)
            index.finish(small_study.STUDY_UID, RECEIVING, error="interrupted")
        assert StudyWorker(config, index, scorer, outbox).process_ready(now=LATER) == 1
        state = index.study(small_study.STUDY_UID)
        assert state is not None
        return state.state, state.error
    finally:
        outbox.stop()
        index.close()


def test_an_unavailable_scorer_sends_the_study_back_to_wait(tmp_path: Path, stopped_grpc_scorer: Scorer) -> None:
    state, error = _process(tmp_path, stopped_grpc_scorer)
    assert state == RECEIVING
    assert error is not None and error.startswith(("scorer unavailable (UNAVAILABLE)", "scorer unavailable (DEADLINE_EXCEEDED)"))


def test_the_study_is_claimed_again_only_after_its_wait(tmp_path: Path, stopped_grpc_scorer: Scorer) -> None:
    """Not at the next cycle (five attempts in a row failed studies within 75 s of an outage):
    after 10 s, then 30 s, as PEER_RETRY_WAITS_S says; the error says when."""
    config = Config(var_dir=tmp_path / "var")
    index = StudyIndex(config.index_path)
    outbox = Outbox(config.var_dir / "outbox.sqlite", {})
    try:
        _received_study(config, index)
        worker = StudyWorker(config, index, stopped_grpc_scorer, outbox)
        start = time.time()
        assert worker.process_ready(now=start) == 1
        first = index.study(small_study.STUDY_UID)
        assert first is not None and first.state == RECEIVING and first.error is not None
        assert first.error.endswith(f"retried in {PEER_RETRY_WAITS_S[0]:g} s")
        assert worker.process_ready(now=time.time() + PEER_RETRY_WAITS_S[0] - 2) == 0  # still waiting
        assert worker.process_ready(now=time.time() + PEER_RETRY_WAITS_S[0] + 1) == 1
        second = index.study(small_study.STUDY_UID)
        assert second is not None and second.attempts == 2 and second.error is not None
        assert second.error.endswith(f"retried in {PEER_RETRY_WAITS_S[1]:g} s")
    finally:
        outbox.stop()
        index.close()


def test_an_unavailable_scorer_at_the_last_attempt_fails_the_study(tmp_path: Path,
                                                                   stopped_grpc_scorer: Scorer) -> None:
    state, error = _process(tmp_path, stopped_grpc_scorer, earlier_attempts=len(PEER_RETRY_WAITS_S))
    assert state == FAILED
    assert error is not None and error.startswith(("scorer: UNAVAILABLE: ", "scorer: DEADLINE_EXCEEDED: "))


def test_a_refusal_fails_the_study_with_the_scorers_status_and_words(tmp_path: Path, context: ScoringContext) -> None:
    shape_only = dataclasses.replace(context, panel=FeaturePanel("shape only", {"core": {"shape": ()}}))
    state, error = _process(tmp_path, InProcessScorer(shape_only))
    assert state == FAILED
    assert error is not None
    assert error.startswith(f"scorer: FAILED_PRECONDITION: lesion 1: signature {context.signature.id}: feature ")
