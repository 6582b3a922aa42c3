"""The cyclic collector paused while a study's outputs are written (service.outputs.collection_pause,
service.pipeline.write_outputs): the SR is the same bytes as one built with the collector
running, and the collector comes back."""

from __future__ import annotations

import gc
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import Dataset

from service.errors import InputError
from service.outputs.collection_pause import collection_paused
from service.outputs.fhir import FhirSettings
from service.outputs.sr import build_measurement_report
from service.pipeline import write_outputs
from tests.support.synthetic_results import make_study_result

_BUILD_TIME = {"ContentDate": "20260101", "ContentTime": "120000", "InstanceCreationDate": "20260101",
               "InstanceCreationTime": "120000"}
"""What highdicom stamps with the clock at each build (two builds differ there anyway), and the
ContributionDateTime of each Contributing Equipment item."""


@pytest.fixture
def collector_enabled() -> Iterator[None]:
    """Each test starts with the collector on, and leaves it as it found it: on, in a test
    process (one test here turns it off). Left off, every later test's reference cycles stayed
    uncollected, sockets among them, until the process had over 1,100 descriptors open and
    pynetdicom's select() refused the new connections' (test_worker_wake's associations were
    aborted when it ran after this file in the same process)."""
    was_enabled = gc.isenabled()
    gc.enable()
    yield
    if was_enabled:
        gc.enable()
    else:
        gc.disable()


def _bytes(sr: Dataset) -> bytes:
    for keyword, value in _BUILD_TIME.items():
        setattr(sr, keyword, value)
    for item in sr.get("ContributingEquipmentSequence", []):
        item.ContributionDateTime = "20260101120000"
    out = io.BytesIO()
    sr.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize("source", ["RTSTRUCT", "SEG"])
def test_sr_bytes_are_the_same_with_the_collector_paused_or_running(source: str, collector_enabled: None) -> None:
    result, evidence = make_study_result(3, source)
    collections: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            collections.append(info["generation"])

    with collection_paused():
        paused = build_measurement_report(result, evidence)
    assert gc.isenabled()
    thresholds = gc.get_threshold()
    gc.callbacks.append(count)
    gc.set_threshold(50)  # the unpaused build collects far more often than by default
    try:
        running = build_measurement_report(result, evidence)
    finally:
        gc.set_threshold(*thresholds)
        gc.callbacks.remove(count)
    assert len(collections) > 100, "the comparison build ran without the collector"
    assert _bytes(paused) == _bytes(running)


def test_outputs_are_written_with_the_collector_off_and_it_comes_back(collector_enabled: None,
                                                                     tmp_path: Path) -> None:
    result, evidence = make_study_result(3)
    collections: list[str] = []
    gc.callbacks.append(lambda phase, info: collections.append(phase))
    try:
        written = write_outputs(result, evidence, tmp_path, FhirSettings("urn:test:patient-id"))
    finally:
        gc.callbacks.pop()
    # one collection at most: the young generation's, triggered when the pause ends
    assert collections in ([], ["start", "stop"]) and gc.isenabled()
    assert written.sr_path.exists() and written.summary_path.exists() and written.bundle_path.exists()


def test_a_failing_write_turns_the_collector_back_on(collector_enabled: None, tmp_path: Path) -> None:
    result, _ = make_study_result(1)
    with pytest.raises(InputError, match="no evidence"):
        write_outputs(result, [], tmp_path, FhirSettings("urn:test:patient-id"))
    assert gc.isenabled()


def test_the_collector_resumes_when_the_last_of_overlapping_pauses_ends(collector_enabled: None) -> None:
    first_in, second_out = threading.Event(), threading.Event()
    seen: list[bool] = []

    def other_build() -> None:
        with collection_paused():
            first_in.set()
            second_out.wait()
        seen.append(gc.isenabled())  # the first pause still holds

    thread = threading.Thread(target=other_build)
    with collection_paused():
        thread.start()
        first_in.wait()
        second_out.set()
        thread.join()
        assert not gc.isenabled()
    assert seen == [False] and gc.isenabled()


def test_a_collector_disabled_before_stays_disabled(collector_enabled: None) -> None:
    gc.disable()
    with collection_paused():
        pass
    assert not gc.isenabled()
