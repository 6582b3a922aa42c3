"""Spool retention (service.retention) on a real index, a real spool and a real outbox in tmp_path:
which studies' spooled files are removed, that they are removed with their directory and the
study marked, what a sweep counts, and what an instance received afterwards does.

The index records real times (a study's outcome is recorded now): the sweeps are run at a
`now` days ahead instead (LATER: past the retention; SOONER: within it).
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.config import Config
from service.ingest.index import DONE, FAILED, PROCESSING, InstanceRecord, StudyIndex, read_studies
from service.ingest.spool import Spool, study_key
from service.observability import INGEST_REGISTRY
from service.outputs.artefacts import Artefact, artefact_path
from service.outputs.outbox import Outbox
from service import retention
from service.retention import SpoolRetention, cutoff, expired, remove
from service.sop_classes import CT_IMAGE, RT_STRUCTURE_SET
from tests.support.destinations import RecordingDestination
from tests.support.old_index import write_index_of_the_release_before

DAYS = 30.0
DAY = 86400.0
LATER = time.time() + (DAYS + 1) * DAY
SOONER = time.time() + (DAYS - 1) * DAY
FAR_FUTURE = time.time() + 10**9  # every delivery due


@dataclass
class Site:
    config: Config
    index: StudyIndex
    spool: Spool
    outbox: Outbox

    def receive(self, study_uid: str, sop_uid: str, size: int, sop_class: str = CT_IMAGE) -> InstanceRecord:
        """A file of `size` bytes moved into the spool and indexed, as the listener does."""
        received = self.config.var_dir / "received.tmp"
        received.write_bytes(os.urandom(size))
        path = self.spool.move_in(study_uid, sop_uid, received)
        record = InstanceRecord(sop_uid, sop_class, study_uid, f"{study_uid}.9", "CT", "1.2.3.4", (0.0,), path,
                                time.time())
        self.index.add_instance(record)
        return record

    def study(self, study_uid: str, sizes: tuple[int, ...] = (3000, 5000)) -> list[InstanceRecord]:
        """A CT slice per size and an RTSTRUCT of 700 bytes, received now."""
        records = [self.receive(study_uid, f"{study_uid}.{n}", size) for n, size in enumerate(sizes, 1)]
        return [*records, self.receive(study_uid, f"{study_uid}.100", 700, RT_STRUCTURE_SET)]

    def finish(self, study_uid: str, state: str = DONE, result: str | None = None) -> None:
        assert self.index.claim(study_uid)
        assert self.index.finish(study_uid, DONE if state == DONE else FAILED, result=result,
                                 error=None if state == DONE else "no CT series in the study")

    def queue(self, result: str, *, delivered: bool) -> None:
        """The result's SR and Bundle queued; `delivered`: both delivered."""
        for name, artefact in (("pacs", Artefact.SR), ("fhir", Artefact.FHIR_BUNDLE)):
            self.outbox.enqueue(name, artefact_path(self.config.outbox_dir, result, artefact))
        if delivered:
            self.outbox.deliver_due(FAR_FUTURE)

    def done_and_delivered(self, study_uid: str, result: str) -> list[InstanceRecord]:
        records = self.study(study_uid)
        self.finish(study_uid, DONE, result)
        self.queue(result, delivered=True)
        return records

    def expired(self, now: float) -> set[str]:
        return {study.study_instance_uid for study in expired(self.index, self.spool, self.outbox.deliveries(),
                                                              self.config, now)}


def _site(var: Path, **settings: object) -> Site:
    config = Config(var_dir=var, spool_retention_days=DAYS, **settings)  # type: ignore[arg-type]
    return Site(config, StudyIndex(config.index_path), Spool(config.spool_dir),
                Outbox(config.outbox_database, [RecordingDestination("pacs", Artefact.SR),
                                                RecordingDestination("fhir", Artefact.FHIR_BUNDLE)]))


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    opened = _site(tmp_path / "var")
    yield opened
    opened.outbox.stop()
    opened.index.close()


def _sizes(records: list[InstanceRecord]) -> int:
    return sum(os.stat(record.path).st_size for record in records)


def _metric(name: str) -> float:
    return INGEST_REGISTRY.get_sample_value(name) or 0.0


def test_old_done_and_failed_studies_go_those_in_flight_new_or_pending_delivery_stay(site: Site) -> None:
    site.done_and_delivered("1.1", "9.1")
    site.study("1.2")
    site.finish("1.2", FAILED)  # no result: nothing to deliver
    site.study("1.3")  # receiving
    site.study("1.4")
    assert site.index.claim("1.4") and site.index.study("1.4").state is PROCESSING
    site.study("1.5")
    site.finish("1.5", DONE, "9.5")
    site.queue("9.5", delivered=False)  # its SR and Bundle still pending

    assert site.expired(SOONER) == set()
    assert site.expired(LATER) == {"1.1", "1.2"}
    site.outbox.deliver_due(FAR_FUTURE)
    assert site.expired(LATER) == {"1.1", "1.2", "1.5"}


def test_a_sweep_removes_the_files_and_directory_durably_marks_the_study_and_counts(site: Site) -> None:
    """The bytes are the files' sizes as the file system gave them before; the instance rows stay."""
    removed = {uid: site.done_and_delivered(uid, f"9.{n}") for n, uid in enumerate(("2.1", "2.2"))}
    kept = site.study("2.3")
    expected_bytes = sum(_sizes(records) for records in removed.values())
    studies_before, bytes_before = _metric("rcds_spool_studies_removed_total"), _metric("rcds_spool_removed_bytes_total")
    started = time.time()

    freed = SpoolRetention(site.config, site.index, site.spool, site.outbox).sweep(now=LATER)

    assert (freed.studies, freed.bytes) == (2, expected_bytes)
    assert _metric("rcds_spool_studies_removed_total") == studies_before + 2
    assert _metric("rcds_spool_removed_bytes_total") == bytes_before + expected_bytes
    for uid, records in removed.items():
        assert not any(record.path.exists() for record in records)
        assert not (site.config.spool_dir / study_key(uid)).exists()
        state = site.index.study(uid)
        assert state.state is DONE and state.files_removed_at is not None
        assert started <= state.files_removed_at <= time.time()
        assert site.index.instances(uid) == records
    assert all(record.path.is_file() for record in kept) and site.index.study("2.3").files_removed_at is None
    assert sorted(path.name for path in site.config.spool_dir.iterdir()) == [study_key("2.3")]
    assert SpoolRetention(site.config, site.index, site.spool, site.outbox).sweep(now=LATER).studies == 0


def test_a_study_goes_whether_or_not_it_is_reconciled(tmp_path: Path) -> None:
    """Reconciling a study reads its SR from the outbox and sends back the patient's *later*
    studies, never its own spool: an unreconciled study (priors on, its SR delivered, the PACS
    of priors down, say) is no reason to keep it."""
    site = _site(tmp_path / "var", prior_providers=("directory",), prior_directory=tmp_path / "priors")
    try:
        site.done_and_delivered("3.1", "9.1")
        assert [study.study_instance_uid for study in site.index.unreconciled()] == ["3.1"]
        assert site.expired(LATER) == {"3.1"}
    finally:
        site.outbox.stop()
        site.index.close()


def test_a_study_scored_without_its_priors_stays_while_it_may_be_scored_again(tmp_path: Path) -> None:
    """Its priors are asked for again for prior_retry_hours from its first result without them
    (service.prior_retry), and scoring it again reads the spool: kept until then, then it goes."""
    retry_hours = (DAYS + 10) * 24
    site = _site(tmp_path / "var", prior_providers=("directory",), prior_directory=tmp_path / "priors",
                 prior_retry_hours=retry_hours)
    try:
        site.study("3.4")
        assert site.index.claim("3.4")
        marked_at = time.time()
        assert site.index.finish("3.4", DONE, result="9.4", priors_unavailable=True)
        site.queue("9.4", delivered=True)
        assert site.expired(LATER) == set()
        assert site.expired(marked_at + retry_hours * 3600 + 60) == {"3.4"}
    finally:
        site.outbox.stop()
        site.index.close()


def test_a_retention_of_0_keeps_every_study(site: Site) -> None:
    site.done_and_delivered("3.3", "9.3")
    kept_for_ever = dataclasses.replace(site.config, spool_retention_days=0)
    assert expired(site.index, site.spool, site.outbox.deliveries(), kept_for_ever, FAR_FUTURE) == []


def test_a_study_to_which_an_instance_came_after_it_was_chosen_is_kept_whole(site: Site) -> None:
    records = site.done_and_delivered("4.1", "9.1")
    (chosen,) = expired(site.index, site.spool, site.outbox.deliveries(), site.config, LATER)
    late = site.receive("4.1", "4.1.200", 900, RT_STRUCTURE_SET)  # a corrected RTSTRUCT: receiving again

    assert remove(site.index, site.spool, chosen, cutoff(DAYS, LATER)) is None
    assert all(record.path.is_file() for record in [*records, late])
    assert site.index.study("4.1").files_removed_at is None


def test_a_removal_cut_short_after_the_mark_is_finished_by_the_next_sweep(site: Site) -> None:
    """A crash after the index recorded the removal, before the files went."""
    records = site.done_and_delivered("5.1", "9.1")
    assert site.index.mark_files_removed("5.1", cutoff(DAYS, LATER)) == records
    expected_bytes = _sizes(records)

    assert SpoolRetention(site.config, site.index, site.spool, site.outbox).sweep(now=LATER).bytes == expected_bytes
    assert not (site.config.spool_dir / study_key("5.1")).exists()


def test_a_sweep_removes_at_most_its_share_the_rest_at_the_next(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "MAX_STUDIES_PER_SWEEP", 2)
    for n in range(3):
        site.done_and_delivered(f"6.{n}", f"9.{n}")
    sweeper = SpoolRetention(site.config, site.index, site.spool, site.outbox)
    assert [sweeper.sweep(now=LATER).studies for _ in range(3)] == [2, 1, 0]


def _age(site: Site, study_uid: str, days: float) -> None:
    """The study's times, and its spooled files' modification times, moved `days` back, as if it
    had been received and scored then."""
    with sqlite3.connect(site.config.index_path) as db:
        db.execute("UPDATE studies SET waiting_since = waiting_since - ?1, last_received_at = last_received_at - ?1,"
                   " updated_at = updated_at - ?1 WHERE study_instance_uid = ?2", (days * DAY, study_uid))
    for record in site.index.instances(study_uid):
        written = os.stat(record.path).st_mtime - days * DAY
        os.utime(record.path, (written, written))


def test_an_instance_received_again_while_its_study_is_removed_is_kept(site: Site) -> None:
    """The listener moves a received file into the spool (where its SOP Instance UID always
    lands) before its index transaction. A study sent again can be marked and listed in
    between: the file just received, newer than the cutoff, stays (it is answered Success), the
    old ones go, and the transaction then finds the row and clears the mark."""
    records = site.done_and_delivered("7.2", "9.2")
    _age(site, "7.2", DAYS + 1)
    old_bytes = _sizes(records[1:])
    (chosen,) = expired(site.index, site.spool, site.outbox.deliveries(), site.config, time.time())
    received = site.config.var_dir / "received.tmp"
    received.write_bytes(os.urandom(1234))
    again = site.spool.move_in("7.2", records[0].sop_instance_uid, received)  # not indexed yet

    assert remove(site.index, site.spool, chosen, cutoff(DAYS, time.time())) == old_bytes
    assert again == records[0].path and os.stat(again).st_size == 1234
    assert not any(record.path.exists() for record in records[1:])
    site.index.add_instance(dataclasses.replace(records[0], received_at=time.time()))
    assert site.index.study("7.2").files_removed_at is None


def test_instances_sent_again_are_stored_again_and_clear_the_mark(site: Site) -> None:
    """The whole study sent again: each file back at its path, its directory made again, the mark
    cleared at the first, and the study not removed again before the retention has passed since
    the instances were received again."""
    records = site.done_and_delivered("7.1", "9.1")
    _age(site, "7.1", DAYS + 1)
    sweeper = SpoolRetention(site.config, site.index, site.spool, site.outbox)
    assert sweeper.sweep(now=time.time()).studies == 1
    assert site.index.study("7.1").files_removed_at is not None

    for record in records:
        again = site.receive("7.1", record.sop_instance_uid, 1234, record.sop_class_uid)
        assert again.path == record.path and os.stat(record.path).st_size == 1234
    study = site.index.study("7.1")
    assert (study.state, study.files_removed_at, study.result) == (DONE, None, "9.1")
    assert site.index.instances("7.1") == records  # the rows as they were: nothing new to score
    assert sweeper.sweep(now=SOONER).studies == 0
    assert all(record.path.is_file() for record in records)
    assert sweeper.sweep(now=LATER).studies == 1


def test_status_reads_an_index_from_before_the_mark_without_migrating_it(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    write_index_of_the_release_before(
        path, "INSERT INTO studies (study_instance_uid, state, waiting_since, last_received_at, updated_at)"
              " VALUES ('1.2.0', 'done', 1, 1, 1)")
    (study,) = read_studies(path)
    assert (study.study_instance_uid, study.state, study.files_removed_at) == ("1.2.0", DONE, None)
    with sqlite3.connect(path) as db:
        assert "files_removed_at" not in {row[1] for row in db.execute("PRAGMA table_info(studies)")}
    index = StudyIndex(path)  # the service opening it adds the column
    assert index.study("1.2.0").files_removed_at is None
    index.close()
