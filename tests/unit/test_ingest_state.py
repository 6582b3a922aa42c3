"""Spool durability, index idempotency and restart, completeness decisions."""

import io
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
from pydicom import Dataset

from service.ingest.completeness import Outcome, assess
from service.ingest.index import (DONE, FAILED, PROCESSING, RECEIVING, InstanceRecord, StudyIndex, StudyOrder,
                                  StudyStatus, read_studies)
from service.ingest.scp import study_order
from service.sop_classes import CT_IMAGE, RT_STRUCTURE_SET
from service.ingest.spool import Spool, study_key
from tests.support.old_index import write_index_of_the_release_before


def _record(uid: str, sop_class: str = CT_IMAGE, positions=(0.0,), at: float = 100.0, study="1.2.3",
            series="1.2.3.1") -> InstanceRecord:
    return InstanceRecord(uid, sop_class, study, series, "CT", "1.2.3.9", tuple(positions), Path(f"/x/{uid}"), at)


def test_spool_writes_atomically_and_replaces_same_uid(tmp_path):
    spool = Spool(tmp_path)
    path = spool.store("1.2.3", "1.2.3.4", io.BytesIO(b"first"))
    assert path == tmp_path / study_key("1.2.3") / "1.2.3.4.dcm" and path.read_bytes() == b"first"
    spool.store("1.2.3", "1.2.3.4", io.BytesIO(b"second"))
    assert path.read_bytes() == b"second"
    assert not list(path.parent.glob(".*"))
    (path.parent / ".1.2.3.5.dcm.abc.tmp").write_bytes(b"partial")  # what a crash mid-write leaves
    assert spool.remove_leftovers() == 1
    assert study_key("1.2.3") not in "1.2.3" and len(study_key("1.2.3")) == 16


def test_index_is_idempotent_and_survives_restart(tmp_path):
    index = StudyIndex(tmp_path / "index.sqlite")
    assert index.add_instance(_record("1"))
    assert not index.add_instance(_record("1", at=200.0))  # repeated SOP Instance UID: nothing changes
    assert index.study("1.2.3").last_received_at == 100.0
    assert index.claim("1.2.3") and not index.claim("1.2.3")
    index.close()
    reopened = StudyIndex(tmp_path / "index.sqlite")
    assert reopened.study("1.2.3").state is StudyStatus.PROCESSING  # read back as the enum
    assert reopened.requeue_interrupted(max_attempts=5) == (1, 0)
    assert [r.sop_instance_uid for r in reopened.instances("1.2.3")] == ["1"]
    assert reopened.study("1.2.3").state == RECEIVING


def test_new_instance_reopens_a_done_study_but_a_repeat_does_not(tmp_path):
    index = StudyIndex(tmp_path / "index.sqlite")
    index.add_instance(_record("1"))
    index.claim("1.2.3")
    index.finish("1.2.3", DONE, result="9.9")
    assert not index.add_instance(_record("1", at=300.0))
    assert index.study("1.2.3").state == DONE
    assert index.add_instance(_record("2", at=300.0))
    assert index.study("1.2.3").state == RECEIVING and index.study("1.2.3").waiting_since == 300.0


def test_each_result_is_reconciled_once_and_a_rescored_study_keeps_its_result(tmp_path):
    index = StudyIndex(tmp_path / "index.sqlite")
    index.add_instance(_record("1"))
    assert index.unreconciled() == [] and not index.rescore("1.2.3", "why")  # receiving: nothing to reconcile
    index.claim("1.2.3")
    index.finish("1.2.3", DONE, result="9.9")
    assert [s.result for s in index.unreconciled()] == ["9.9"]
    index.mark_reconciled("1.2.3", "9.9")
    assert index.unreconciled() == []

    assert index.rescore("1.2.3", "an earlier report arrived")
    state = index.study("1.2.3")
    assert (state.state, state.result, state.error, state.attempts) == (RECEIVING, "9.9", "an earlier report arrived", 0)
    index.claim("1.2.3")
    assert index.finish("1.2.3", DONE, result="9.10")  # claimed at the rescore's generation
    assert [s.result for s in StudyIndex(tmp_path / "index.sqlite").unreconciled()] == ["9.10"]  # durable


def _generation(path: Path, study_uid: str) -> int:
    """The study's generation, which StudyState does not carry: read from the index file."""
    with closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT generation FROM studies WHERE study_instance_uid = ?", (study_uid,)).fetchone()[0]


def test_a_failed_study_is_sent_back_only_when_asked_and_a_study_in_progress_never(tmp_path):
    """Reconciliation's rescore (done studies) leaves a failed study failed; `radiomics-cds
    rescore`'s (done or failed) sends it back at a new generation from attempt 0, keeping the
    SR of its earlier scoring for the new one to name as predecessor. A study receiving or being
    scored is left as it is, and its claim still finishes it."""
    path = tmp_path / "index.sqlite"
    index = StudyIndex(path)
    index.add_instance(_record("1"))
    assert index.claim("1.2.3") and index.finish("1.2.3", DONE, result="9.9")
    index.add_instance(_record("2", at=200.0))  # scored again with it: the scorer is down, retried, given up
    assert index.claim("1.2.3")
    index.requeue("1.2.3", "scorer unavailable (UNAVAILABLE); retried in 10 s")
    assert index.claim("1.2.3") and index.finish("1.2.3", FAILED, error="scorer: UNAVAILABLE: connection refused")
    failed = index.study("1.2.3")
    assert (failed.state, failed.attempts, failed.result, _generation(path, "1.2.3")) == (FAILED, 2, "9.9", 1)

    assert not index.rescore("1.2.3", "an earlier report arrived")
    assert index.study("1.2.3") == failed and _generation(path, "1.2.3") == 1

    before = time.time()
    assert index.rescore("1.2.3", "scored again on request", failed_too=True)
    again = index.study("1.2.3")
    assert (again.state, again.attempts, again.result, again.error) == (RECEIVING, 0, "9.9", "scored again on request")
    assert again.waiting_since >= before and again.last_received_at >= before  # the quiet period from now
    assert _generation(path, "1.2.3") == 2

    assert not index.rescore("1.2.3", "asked twice", failed_too=True)  # receiving: queued already
    assert index.study("1.2.3") == again and _generation(path, "1.2.3") == 2
    assert index.claim("1.2.3")
    assert not index.rescore("1.2.3", "asked while scored", failed_too=True)
    assert index.finish("1.2.3", DONE, result="9.10")  # at the claim's generation: not dropped
    assert (index.study("1.2.3").state, index.study("1.2.3").error) == (DONE, None)


def _without_priors(index: StudyIndex) -> list[str]:
    return [study.study_instance_uid for study in index.scored_without_priors()]


def test_a_result_without_its_priors_is_marked_until_a_scoring_has_them(tmp_path):
    """Marked when written while no prior source answered, from that first result on: scoring
    it again (sent back, an instance arriving) while the sources still fail, or a failure in
    between, keeps the first moment. A done result with its priors clears it. Only a done
    study is listed for the worker to ask again about; the mark survives a restart."""
    path = tmp_path / "index.sqlite"
    index = StudyIndex(path)
    index.add_instance(_record("1"))
    index.add_instance(_record("4.1", study="1.2.4"))  # another study, scored with its priors
    before = time.time()
    assert index.claim("1.2.3") and index.finish("1.2.3", DONE, result="9.9", priors_unavailable=True)
    assert index.claim("1.2.4") and index.finish("1.2.4", DONE, result="9.8")
    first = index.study("1.2.3").priors_unavailable_since
    assert first is not None and before <= first <= time.time()
    assert index.study("1.2.4").priors_unavailable_since is None
    assert _without_priors(index) == ["1.2.3"]

    assert index.rescore("1.2.3", "scored again: its priors are available now")
    assert index.study("1.2.3").priors_unavailable_since == first and _without_priors(index) == []  # receiving
    assert index.claim("1.2.3") and index.finish("1.2.3", DONE, result="9.10", priors_unavailable=True)
    assert index.study("1.2.3").priors_unavailable_since == first  # failing still: the same clock
    index.add_instance(_record("2", at=200.0))
    assert index.claim("1.2.3")
    index.requeue("1.2.3", "scorer unavailable (UNAVAILABLE); retried in 10 s")
    assert index.claim("1.2.3") and index.finish("1.2.3", FAILED, error="scorer: UNAVAILABLE: connection refused")
    assert index.study("1.2.3").priors_unavailable_since == first and _without_priors(index) == []  # failed
    index.close()

    index = StudyIndex(path)
    assert index.study("1.2.3").priors_unavailable_since == first  # durable
    assert index.rescore("1.2.3", "scored again on request", failed_too=True)
    assert index.claim("1.2.3") and index.finish("1.2.3", DONE, result="9.11")
    assert index.study("1.2.3").priors_unavailable_since is None and _without_priors(index) == []
    index.close()


def _study(index: StudyIndex):
    return index.study("1.2.3")


@pytest.fixture
def index(tmp_path):
    return StudyIndex(tmp_path / "index.sqlite")


def test_early_completion_when_ct_covers_the_contours_with_margin(index):
    contour = _record("rs", RT_STRUCTURE_SET, positions=(20.0, 23.0, 26.0), at=100.0)
    cts = [_record(f"ct{i}", positions=(3.0 * i,), at=100.0) for i in range(4, 11)]  # z 12..30
    for r in [contour, *cts]:
        index.add_instance(r)
    decision = assess(_study(index), index.instances("1.2.3"), now=101.0, quiet_seconds=30, hard_cap_seconds=600)
    assert decision.outcome is Outcome.WAIT  # 2 + 1 mm + one 3 mm slice beyond 26 mm not covered (CT ends at 30 mm)
    for i in (2, 3, 11, 12):
        index.add_instance(_record(f"ct{i}", positions=(3.0 * i,), at=101.0))
    decision = assess(_study(index), index.instances("1.2.3"), now=101.5, quiet_seconds=30, hard_cap_seconds=600)
    assert decision.outcome is Outcome.READY and decision.ready and "span" in decision.reason


def test_gap_in_ct_prevents_early_completion_and_quiet_period_decides(index):
    index.add_instance(_record("rs", RT_STRUCTURE_SET, positions=(30.0,), at=100.0))
    for i in list(range(0, 10)) + list(range(11, 21)):  # slice 10 missing
        index.add_instance(_record(f"ct{i}", positions=(3.0 * i,), at=100.0))
    assert not assess(_study(index), index.instances("1.2.3"), 110.0, 30, 600).ready
    decision = assess(_study(index), index.instances("1.2.3"), 130.0, 30, 600)
    assert decision.ready and "no new instance" in decision.reason


def test_ct_alone_waits_past_quiet_until_the_hard_cap_then_fails(index):
    index.add_instance(_record("ct0", positions=(0.0,), at=100.0))
    assert assess(_study(index), index.instances("1.2.3"), 200.0, 30, 600).outcome is Outcome.WAIT
    decision = assess(_study(index), index.instances("1.2.3"), 701.0, 30, 600)
    assert decision.outcome is Outcome.FAILED and not decision.ready and "no RTSTRUCT or SEG" in decision.reason


def test_instance_arriving_during_processing_is_not_dropped(tmp_path):
    index = StudyIndex(tmp_path / "index.sqlite")
    index.add_instance(_record("1"))
    assert index.claim("1.2.3")
    index.add_instance(_record("2", at=150.0))  # arrives while the worker scores the study
    assert not index.finish("1.2.3", DONE, result="9.9")
    assert index.study("1.2.3").state == RECEIVING  # scored again, with instance 2
    assert index.claim("1.2.3")
    assert index.finish("1.2.3", DONE, result="9.9")
    assert index.study("1.2.3").state == DONE


def test_requeue_sends_a_claimed_study_back_with_its_reason_and_counts_the_attempt(index):
    index.add_instance(_record("1"))
    assert index.claim("1.2.3")
    index.requeue("1.2.3", "scorer unavailable (UNAVAILABLE)")
    study = index.study("1.2.3")
    assert (study.state, study.attempts, study.error) == (RECEIVING, 1, "scorer unavailable (UNAVAILABLE)")
    assert index.claim("1.2.3") and index.study("1.2.3").attempts == 2
    index.add_instance(_record("2", at=150.0))  # arrives during the second attempt
    index.requeue("1.2.3", "scorer unavailable (DEADLINE_EXCEEDED)")
    assert (index.study("1.2.3").state, index.study("1.2.3").error) == (RECEIVING, "scorer unavailable (UNAVAILABLE)")


def test_the_oldest_age_per_state_counts_from_the_waiting_start_and_from_the_claim(tmp_path):
    """Receiving: from the first instance of the round, however recent the last one, and across
    a scorer retry; processing: from the claim, not from the instances; 0 with none."""
    index = StudyIndex(tmp_path / "index.sqlite")
    now = time.time()
    assert index.oldest_age(RECEIVING, now) == index.oldest_age(PROCESSING, now) == 0.0
    index.add_instance(_record("1", at=now - 5000, study="1.2.3"))
    index.add_instance(_record("2", at=now - 100, study="1.2.3"))  # its sender still trickles
    index.add_instance(_record("3", at=now - 3000, study="1.2.4"))
    assert index.oldest_age(RECEIVING, now) == 5000.0
    assert index.claim("1.2.3")  # after `now`
    assert index.oldest_age(RECEIVING, now) == 3000.0
    assert index.oldest_age(PROCESSING, now) == 0.0
    assert 59.0 < index.oldest_age(PROCESSING, now + 60) <= 60.0
    index.requeue("1.2.3", "scorer unavailable (UNAVAILABLE); retried in 10 s")
    assert index.oldest_age(RECEIVING, now) == 5000.0
    assert index.oldest_age(PROCESSING, now) == 0.0
    assert [study.since for study in index.studies_in(RECEIVING)] == [now - 3000, now - 5000]


def test_study_interrupted_too_often_is_failed_not_requeued(tmp_path):
    index = StudyIndex(tmp_path / "index.sqlite")
    index.add_instance(_record("1"))
    for _ in range(3):
        assert index.claim("1.2.3")
        index.requeue_interrupted(max_attempts=3)
    assert index.study("1.2.3").state == FAILED
    assert "interrupted 3 times" in index.study("1.2.3").error


def test_claims_waiting_out_a_peer_are_not_interruptions(tmp_path):
    """A study claimed again and again while a scorer or a PACS is retried (requeue) is on its
    8th claim when the process restarts: that is its first interruption, requeued, not a sixth
    one failed as a crash loop; five interruptions still fail it, and a study sent back (an
    instance) starts counting again."""
    index = StudyIndex(tmp_path / "index.sqlite")
    index.add_instance(_record("1"))
    for _ in range(7):
        assert index.claim("1.2.3")
        index.requeue("1.2.3", "scorer unavailable (UNAVAILABLE); retried in 10 s")
    assert index.claim("1.2.3") and index.study("1.2.3").attempts == 8
    assert index.requeue_interrupted(max_attempts=5) == (1, 0)
    for _ in range(3):
        assert index.claim("1.2.3") and index.requeue_interrupted(max_attempts=5) == (1, 0)
    assert index.claim("1.2.3") and index.requeue_interrupted(max_attempts=5) == (0, 1)
    assert index.study("1.2.3").error == "interrupted 5 times while being scored"

    index.add_instance(_record("2", at=300.0))  # sent back by a new instance: counted from 0
    assert index.claim("1.2.3") and index.requeue_interrupted(max_attempts=5) == (1, 0)


def test_coverage_is_judged_per_series(index):
    """A complete 5 mm series must not hide that the 1 mm series is still arriving."""
    index.add_instance(_record("rs", RT_STRUCTURE_SET, positions=(50.0,)))
    for i in range(0, 21):
        index.add_instance(_record(f"thick{i}", positions=(5.0 * i,), series="1.2.3.5"))
    for i in list(range(30, 50)) + list(range(51, 71)):  # the thin series lacks z = 50
        index.add_instance(_record(f"thin{i}", positions=(1.0 * i,), series="1.2.3.1"))
    assert not assess(_study(index), index.instances("1.2.3"), 101.0, 30, 600).ready
    index.add_instance(_record("thin50", positions=(50.0,), series="1.2.3.1"))
    assert assess(_study(index), index.instances("1.2.3"), 101.0, 30, 600).ready


def _order(patient: str, issuer: str, date: str, time: str = "") -> StudyOrder:
    header = Dataset()
    header.PatientID, header.IssuerOfPatientID, header.StudyDate, header.StudyTime = patient, issuer, date, time
    return study_order(header)


@pytest.mark.filterwarnings("ignore:Invalid value for VR TM")  # the retired HH:MM:SS form, still sent
def test_study_order_hashes_the_patient_and_sorts_date_then_time():
    order = _order("PAT-1", "HOSP", "20240101", "0930")
    assert "PAT-1" not in order.patient_key and len(order.patient_key) == 64
    assert order.study_datetime == "20240101093000"  # HHMM padded: comparable with HHMMSS
    assert _order("PAT-1", "HOSP", "20240101", "093000.25").study_datetime == "20240101093000.25"
    assert _order("PAT-1", "HOSP", "20240101", "09:30:00").study_datetime == "20240101093000"  # ACR-NEMA form
    assert _order("PAT-1", "HOSP", "20240301").patient_key == order.patient_key
    assert _order("PAT-1", "OTHER", "20240101").patient_key != order.patient_key  # an issuer's namespace
    assert not _order("", "HOSP", "20240101").known and not _order("PAT-1", "HOSP", "").known


def test_earlier_studies_are_the_same_patients_earlier_ones(tmp_path):
    index = StudyIndex(tmp_path / "index.sqlite")
    orders = {"base": _order("P", "H", "20240101"), "same-day-later": _order("P", "H", "20240101", "1200"),
              "follow": _order("P", "H", "20240301"), "other-patient": _order("Q", "H", "20231201"),
              "unknown": _order("", "", "")}
    uids = {name: f"1.2.{n}" for n, name in enumerate(orders)}
    for name, order in orders.items():
        index.add_instance(_record(f"9.{uids[name]}", study=uids[name]), order)
    index.add_instance(_record("9.9.9", study=uids["base"]), _order("P", "H", "20250101"))  # the first order stays

    def earlier(name: str) -> list[str]:
        return [study.study_instance_uid for study in index.earlier_studies(uids[name])]

    assert earlier("follow") == [uids["base"], uids["same-day-later"]]
    assert earlier("same-day-later") == [uids["base"]]
    assert earlier("base") == earlier("other-patient") == earlier("unknown") == []
    index.close()
    assert [s.study_instance_uid for s in StudyIndex(tmp_path / "index.sqlite").earlier_studies(uids["follow"])] \
        == [uids["base"], uids["same-day-later"]]  # durable


def test_an_index_from_before_study_order_gains_it(tmp_path):
    """An index written by a release without the order columns opens, and orders new studies."""
    path = tmp_path / "index.sqlite"
    with sqlite3.connect(path) as old:
        old.executescript(
            "CREATE TABLE studies (study_instance_uid TEXT PRIMARY KEY, state TEXT NOT NULL, waiting_since REAL"
            " NOT NULL, last_received_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, generation INTEGER"
            " NOT NULL DEFAULT 0, claimed_generation INTEGER NOT NULL DEFAULT -1, error TEXT, result TEXT,"
            " updated_at REAL NOT NULL);"
            "INSERT INTO studies (study_instance_uid, state, waiting_since, last_received_at, updated_at)"
            " VALUES ('1.2.0', 'done', 1, 1, 1);")
    index = StudyIndex(path)
    index.add_instance(_record("9.1", study="1.2.1"), _order("P", "H", "20240101"))
    index.add_instance(_record("9.2", study="1.2.2"), _order("P", "H", "20240301"))
    assert [s.study_instance_uid for s in index.earlier_studies("1.2.2")] == ["1.2.1"]
    assert index.earlier_studies("1.2.0") == [] and index.study("1.2.0").state is DONE


def test_an_index_from_before_the_priors_mark_gains_it_and_status_reads_it_before(tmp_path):
    """An index of the release before (study order, no priors_unavailable_since) is read by
    `status` as it is, read-only, every study unmarked; opened by the service it gains the
    column, keeps its studies and marks a result without its priors."""
    path = tmp_path / "index.sqlite"
    write_index_of_the_release_before(
        path, "INSERT INTO studies (study_instance_uid, state, waiting_since, last_received_at, result, updated_at)"
              " VALUES ('1.2.0', 'done', 1, 1, '9.0', 1)")
    before = path.read_bytes()
    (old_study,) = read_studies(path)
    assert (old_study.state, old_study.result, old_study.priors_unavailable_since) == (DONE, "9.0", None)
    assert path.read_bytes() == before

    index = StudyIndex(path)
    assert index.study("1.2.0").result == "9.0" and index.scored_without_priors() == []
    index.add_instance(_record("1"))
    assert index.claim("1.2.3") and index.finish("1.2.3", DONE, result="9.9", priors_unavailable=True)
    assert _without_priors(index) == ["1.2.3"]
    index.close()
    assert [study.priors_unavailable_since is not None for study in read_studies(path)] == [False, True]
