"""A scored study's deliveries survive a crash between "done" (index) and "queued" (outbox).

The two commits live in two SQLite databases. The crash is injected by making the outbox's
enqueue raise a BaseException the worker does not catch, as a kill -9 at that instruction
would stop it: no real peer can stop a process between two particular statements.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from service.config import Config
from service.ingest.index import DONE, InstanceRecord, StudyIndex
from service.outputs.artefacts import Artefact
from service.outputs.destinations import Destination, configured_destinations
from service.outputs.fhir import FhirSettings
from service.outputs.outbox import DELIVERED, PENDING, Outbox
from service.pipeline import WrittenOutputs, write_outputs
from service.sop_classes import CT_IMAGE
from service.worker import StudyWorker
from tests.support.destinations import RecordingDestination
from tests.support.synthetic_results import make_study_result

STUDY = "1.2.826.0.1.3680043.8.498.1"


class ProcessKilled(BaseException):
    """Stands for the process dying: nothing after it runs."""


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """The PACS and the EHR configured (on a port nothing listens on: nothing is sent to them)."""
    return Config(var_dir=tmp_path / "var", pacs_host="127.0.0.1", pacs_port=9, fhir_base_url="http://127.0.0.1:9/fhir")


def _scored(config: Config, index: StudyIndex) -> WrittenOutputs:
    """A claimed study with its outputs (SR, tumour-board page, Bundle) written to the outbox directory."""
    index.add_instance(InstanceRecord("1.2.3.4.5.6", CT_IMAGE, STUDY, "1.2.3.4.5.7", "CT", "1.2.3.4.5.8", (0.0,),
                                      config.spool_dir / "x.dcm", 100.0))
    assert index.claim(STUDY)
    result, evidence = make_study_result()
    return write_outputs(result, evidence, config.outbox_dir, FhirSettings.from_config(config))


def _open(config: Config, destinations: Sequence[Destination] | None = None) -> tuple[StudyIndex, Outbox, StudyWorker]:
    """Index, outbox and worker on `config`'s var directory, delivering to `destinations` (by
    default those the configuration builds)."""
    index = StudyIndex(config.index_path)
    outbox = Outbox(config.var_dir / "outbox.sqlite",
                    configured_destinations(config) if destinations is None else destinations)
    return index, outbox, StudyWorker(config, index, scorer=None, outbox=outbox)  # type: ignore[arg-type]


def test_a_crash_between_done_and_queued_is_repaired_at_start(config: Config, monkeypatch) -> None:
    index, outbox, worker = _open(config)
    written = _scored(config, index)

    def killed(destination: str, path: Path) -> None:
        raise ProcessKilled

    monkeypatch.setattr(outbox, "enqueue", killed)
    with pytest.raises(ProcessKilled):
        worker.complete(STUDY, written)
    assert index.study(STUDY).state == DONE and outbox.deliveries() == []
    outbox.stop()
    index.close()

    index, outbox, worker = _open(config)  # the restart
    try:
        worker.start()
        queued = {(d.destination, d.path, d.state) for d in outbox.deliveries()}
        assert queued == {("pacs", written.sr_path, PENDING), ("pacs-summary", written.summary_document_path, PENDING),
                          ("fhir", written.bundle_path, PENDING)}
    finally:
        worker.stop()
        outbox.stop()
        index.close()


def test_recovery_leaves_deliveries_it_already_knows(config: Config) -> None:
    """A delivered SR is not sent again, and a second start queues nothing."""
    pacs = RecordingDestination("pacs", Artefact.SR)
    index, outbox, worker = _open(config, [pacs])
    written = _scored(config, index)
    assert worker.complete(STUDY, written)
    assert outbox.deliver_due() == 1 and pacs.sent == [written.sr_path]
    try:
        assert worker.queue_missing_deliveries() == 0
        assert [(d.destination, d.state) for d in outbox.deliveries()] == [("pacs", DELIVERED)]
    finally:
        outbox.stop()
        index.close()


def test_a_new_destination_gets_its_artefact_with_no_other_change(config: Config) -> None:
    """A third destination, unknown to the worker and the outbox, is queued the artefact it
    takes: at completion, and at the start after it was added to done studies' deliveries."""
    archive = RecordingDestination("archive", Artefact.SR)
    index, outbox, worker = _open(config, [*configured_destinations(config), archive])
    written = _scored(config, index)
    try:
        assert worker.complete(STUDY, written)
        queued = {(d.destination, d.path) for d in outbox.deliveries()}
        assert queued == {("pacs", written.sr_path), ("pacs-summary", written.summary_document_path),
                          ("fhir", written.bundle_path), ("archive", written.sr_path)}
    finally:
        outbox.stop()
        index.close()

    records = RecordingDestination("records", Artefact.FHIR_BUNDLE)
    index, outbox, worker = _open(config, [records])  # a restart with another destination configured
    try:
        assert worker.queue_missing_deliveries() == 1
        outbox.deliver_due()  # the earlier four rows fail: their destinations are gone
        assert records.sent == [written.bundle_path]
    finally:
        outbox.stop()
        index.close()
