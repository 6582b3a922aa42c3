"""The durable outbox's own logic: scheduling, backoff, giving up, restarts, recovery.

Senders here are FAKES, plain functions that record the paths they are given and raise what
the test scripts, each given to the outbox as a destination of its name: the outbox's bookkeeping does not depend on what is at the other end, and a
scripted sender produces any sequence of failures on demand, without a peer or a wait. The
same outbox against real peers (dcmtk's storescp, a real FHIR server, refused connections) is
tests/integration/test_delivery.py. The clock is driven through `deliver_due(now)`.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.outputs.artefacts import Artefact
from service.observability import INGEST_REGISTRY
from service.outputs.outbox import DELIVERED, FAILED, PENDING, Delivery, Outbox, redeliver
from service.outputs.pacs import DeliveryError
from tests.support.processes import wait_until
from tests.support.outbox import Outboxes, only

FAR_FUTURE = 10 * 365 * 24 * 3600.0
"""Added to now: every pending delivery is due, whatever its backoff."""
REFUSED = DeliveryError("no association with PACS at 127.0.0.1:104")


class FakeSender:
    """FAKE sender: records each path; call n raises outcomes[n] when that is an exception,
    and succeeds once the outcomes run out."""

    def __init__(self, *outcomes: BaseException | None) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[Path] = []

    def __call__(self, path: Path) -> None:
        self.calls.append(path)
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome


def always(error: BaseException) -> FakeSender:
    return FakeSender(*[error] * 100)


@pytest.fixture
def sr_path(tmp_path: Path) -> Path:
    path = tmp_path / "outbox" / "1.2.3.dcm"
    path.parent.mkdir()
    path.write_bytes(b"an SR")
    return path


@dataclass
class Named:
    """A FAKE sender as the destination `name` (which artefact it takes is no concern of the outbox)."""

    name: str
    send: Callable[[Path], None]
    artefact: Artefact = Artefact.SR

    @property
    def peer(self) -> str:
        return self.name


@pytest.fixture
def outboxes(tmp_path: Path) -> Iterator[Callable[..., Outbox]]:
    """Opens an Outbox with {destination name: fake sender} (or a list of destinations);
    reopening stands for a restart."""
    opener = Outboxes(tmp_path / "var" / "outbox.sqlite")
    yield lambda senders, **options: opener(
        [Named(name, send) for name, send in senders.items()] if isinstance(senders, dict) else senders, **options)
    opener.stop_all()


def test_an_enqueued_file_is_delivered_once(sr_path, outboxes):
    pacs = FakeSender()
    outbox = outboxes({"pacs": pacs})
    outbox.enqueue("pacs", sr_path)
    assert outbox.pending_count() == 1

    assert outbox.deliver_due() == 1
    assert pacs.calls == [sr_path]
    assert only(outbox) == Delivery("pacs", sr_path, DELIVERED, 1, None)
    assert outbox.pending_count() == 0
    assert outbox.deliver_due(time.time() + FAR_FUTURE) == 0 and pacs.calls == [sr_path]


def test_each_destination_gets_its_own_row(sr_path, outboxes):
    bundle_path = sr_path.with_name("1.2.3.fhir.json")
    pacs, ehr = FakeSender(), FakeSender(REFUSED)
    outbox = outboxes({"pacs": pacs, "fhir": ehr})
    outbox.enqueue("pacs", sr_path)
    outbox.enqueue("fhir", bundle_path)

    assert outbox.deliver_due() == 2
    assert (pacs.calls, ehr.calls) == ([sr_path], [bundle_path])
    assert {(d.destination, d.state, d.attempts) for d in outbox.deliveries()} == {
        ("pacs", DELIVERED, 1), ("fhir", PENDING, 1)}
    assert (outbox.state_of("pacs", sr_path), outbox.state_of("fhir", bundle_path)) == (DELIVERED, PENDING)
    assert outbox.state_of("fhir", sr_path) is None  # never queued there


def test_backoff_doubles_up_to_the_cap(sr_path, outboxes):
    outbox = outboxes({"pacs": always(REFUSED)}, initial_backoff_s=10, max_backoff_s=25, max_attempts=10)
    outbox.enqueue("pacs", sr_path)
    expected_backoffs = [10, 20, 25, 25]
    for attempt, backoff in enumerate(expected_backoffs, start=1):
        failed_at = time.time()
        assert outbox.deliver_due(failed_at + FAR_FUTURE) == 1
        assert (only(outbox).state, only(outbox).attempts) == (PENDING, attempt)
        # Not due just before the backoff ends (1 s of slack for a slow machine), due just after.
        assert outbox.deliver_due(failed_at + backoff - 1) == 0
    assert outbox.deliver_due(time.time() + 25 + 1) == 1


def test_delivery_fails_after_max_attempts_and_keeps_the_file(sr_path, outboxes):
    pacs = always(REFUSED)
    outbox = outboxes({"pacs": pacs}, max_attempts=3, initial_backoff_s=1)
    outbox.enqueue("pacs", sr_path)

    for attempt in (1, 2):
        assert outbox.deliver_due(time.time() + FAR_FUTURE) == 1
        assert (only(outbox).state, only(outbox).attempts) == (PENDING, attempt)
    assert outbox.deliver_due(time.time() + FAR_FUTURE) == 1

    assert only(outbox) == Delivery("pacs", sr_path, FAILED, 3, str(REFUSED))
    assert outbox.deliver_due(time.time() + FAR_FUTURE) == 0
    assert len(pacs.calls) == 3 and outbox.pending_count() == 0
    assert sr_path.read_bytes() == b"an SR"


def test_a_permanent_error_is_not_retried(sr_path, outboxes):
    refusal = DeliveryError("FHIR server answered 400: Observation.status invalid", permanent=True)
    ehr = always(refusal)
    outbox = outboxes({"fhir": ehr}, max_attempts=10)
    outbox.enqueue("fhir", sr_path)

    assert outbox.deliver_due() == 1
    assert only(outbox) == Delivery("fhir", sr_path, FAILED, 1, str(refusal))
    assert outbox.deliver_due(time.time() + FAR_FUTURE) == 0 and len(ehr.calls) == 1


def test_unconfigured_destination_fails_permanently(sr_path, outboxes):
    """A row left by an earlier configuration that had this destination."""
    outbox = outboxes({})
    outbox.enqueue("pacs", sr_path)
    assert outbox.deliver_due() == 1
    delivery = only(outbox)
    assert (delivery.state, delivery.attempts) == (FAILED, 1)
    assert delivery.last_error == "destination pacs is no longer configured"


def test_the_running_outbox_gives_up_rows_of_an_unconfigured_destination(sr_path, outboxes):
    """Their lane of their own (service.outputs.outbox): nothing else attempts them once the
    destination's own lane is gone."""
    outbox = outboxes({"fhir": FakeSender()})
    outbox.enqueue("pacs", sr_path)
    outbox.start()
    wait_until(lambda: only(outbox).state == FAILED, 20, "the outbox to give the row up")
    assert only(outbox).last_error == "destination pacs is no longer configured"


class HangingSender:
    """FAKE sender that holds its attempt until released, as a peer that accepts the connection
    and never answers holds it until the timeout (no real peer hangs on cue and lets go on cue)."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls: list[Path] = []

    def __call__(self, path: Path) -> None:
        self.calls.append(path)
        self.started.set()
        assert self.release.wait(30), "the test never released the sender"


def test_a_destination_that_hangs_holds_none_of_the_others(sr_path, outboxes):
    """Each destination's deliveries run in a thread of their own: while every attempt to the
    EHR hangs, the PACS gets each SR enqueued after them; released, the EHR gets its Bundles."""
    bundles = [sr_path.with_name(f"{n}.fhir.json") for n in range(3)]
    srs = [sr_path, sr_path.with_name("other.dcm")]
    ehr, pacs = HangingSender(), FakeSender()
    outbox = outboxes({"fhir": ehr, "pacs": pacs})
    outbox.start()
    for bundle in bundles:
        outbox.enqueue("fhir", bundle)
    assert ehr.started.wait(20)
    for sr in srs:
        outbox.enqueue("pacs", sr)
    wait_until(lambda: pacs.calls == srs, 20, "the PACS to get both SRs while the EHR hangs")
    assert ehr.calls == bundles[:1]  # still in its first attempt
    ehr.release.set()
    wait_until(lambda: all(d.state == DELIVERED for d in outbox.deliveries()), 20, "every delivery to be done")
    assert ehr.calls == bundles


def test_a_stopping_lane_stops_after_the_attempt_it_is_in(sr_path, outboxes):
    """stop() lets the attempt under way end and attempts no other: the rest stay pending, with
    no attempt counted, and a restart delivers them."""
    srs = [sr_path, sr_path.with_name("second.dcm"), sr_path.with_name("third.dcm")]
    pacs = HangingSender()
    outbox = outboxes({"pacs": pacs})
    for sr in srs:
        outbox.enqueue("pacs", sr)
    outbox.start()
    assert pacs.started.wait(20)
    stopping = threading.Thread(target=outbox.stop, kwargs={"timeout_s": 20.0})
    stopping.start()
    wait_until(lambda: outbox._stop.is_set(), 20, "the stop to begin")
    pacs.release.set()
    stopping.join(30)
    assert not stopping.is_alive() and not any(thread.is_alive() for thread in outbox._threads)
    assert pacs.calls == srs[:1]
    after_restart = FakeSender()
    restarted = outboxes({"pacs": after_restart})
    assert {(d.path, d.state, d.attempts) for d in restarted.deliveries()} == {
        (srs[0], DELIVERED, 1), (srs[1], PENDING, 0), (srs[2], PENDING, 0)}
    assert restarted.deliver_due() == 2 and after_restart.calls == srs[1:]


def test_a_lane_still_in_its_attempt_after_the_stop_timeout_keeps_the_database(sr_path, outboxes, caplog):
    """A peer slower than the stop's timeout: stop() returns, says which lane it left, and
    does not close the database under it; the attempt's outcome is still recorded."""
    ehr, pacs = HangingSender(), FakeSender()
    outbox = outboxes({"fhir": ehr, "pacs": pacs})
    outbox.enqueue("fhir", sr_path)
    outbox.start()
    assert ehr.started.wait(20)
    caplog.set_level(logging.WARNING, logger="service.outputs.outbox")
    try:
        outbox.stop(timeout_s=2.0)  # the idle lanes, woken by the stop, end well within it
        assert [r.getMessage() for r in caplog.records if r.name == "service.outputs.outbox"] == [
            "outbox-fhir still in an attempt after 2 s; stopping without it"]
    finally:
        ehr.release.set()
    wait_until(lambda: not any(thread.is_alive() for thread in outbox._threads), 20,
               "the EHR's lane to end its attempt")
    assert only(outbox) == Delivery("fhir", sr_path, DELIVERED, 1, None)


@dataclass
class OfPeer:
    """A FAKE sender as the destination `name` of the peer `peer`."""

    name: str
    send: Callable[[Path], None]
    peer: str
    artefact: Artefact = Artefact.SR


def test_destinations_of_one_peer_deliver_one_at_a_time_in_order(sr_path, outboxes):
    """The PACS by C-STORE takes the SR (`pacs`) and the page (`pacs-summary`): one lane, so the
    PACS sees one association of ours at a time and a result's SR before its page."""
    page = sr_path.with_name("page.dcm")
    sent: list[str] = []
    sr_sender = HangingSender()

    def page_sender(path: Path) -> None:
        sent.append("page, the SR's attempt " + ("over" if sr_sender.release.is_set() else "still open"))

    outbox = outboxes([OfPeer("pacs", sr_sender, "pacs"), OfPeer("pacs-summary", page_sender, "pacs")])
    assert sorted(thread.name for thread in outbox._threads) == ["outbox-pacs", "outbox-unconfigured"]
    outbox.enqueue("pacs", sr_path)
    outbox.enqueue("pacs-summary", page)
    outbox.start()
    assert sr_sender.started.wait(20)
    sr_sender.release.set()
    wait_until(lambda: sent, 20, "the page to be sent")
    assert sent == ["page, the SR's attempt over"]


def test_reenqueue_after_failure_delivers_again(sr_path, outboxes):
    """A re-written result is enqueued again: a failed row starts over (state, attempts, error)."""
    pacs = FakeSender(REFUSED)
    outbox = outboxes({"pacs": pacs}, max_attempts=1)
    outbox.enqueue("pacs", sr_path)
    outbox.deliver_due()
    assert only(outbox).state == FAILED

    outbox.enqueue("pacs", sr_path)
    assert only(outbox) == Delivery("pacs", sr_path, PENDING, 0, None)
    assert outbox.deliver_due() == 1
    assert only(outbox) == Delivery("pacs", sr_path, DELIVERED, 1, None)
    assert pacs.calls == [sr_path, sr_path]


def test_reenqueue_during_an_attempt_is_not_marked_delivered(sr_path, outboxes):
    """The attempt under way sent the old content: the newer one must still go."""
    outbox: Outbox

    def rewritten_while_sending(path: Path) -> None:
        outbox.enqueue("pacs", path)

    outbox = outboxes({"pacs": rewritten_while_sending})
    outbox.enqueue("pacs", sr_path)
    assert outbox.deliver_due() == 1
    assert only(outbox) == Delivery("pacs", sr_path, PENDING, 0, None)


def test_a_restart_keeps_pending_rows_their_attempts_and_backoff(sr_path, outboxes):
    first = outboxes({"pacs": FakeSender(REFUSED)}, initial_backoff_s=60)
    first.enqueue("pacs", sr_path)
    first.deliver_due()
    first.stop()

    pacs = FakeSender()
    second = outboxes({"pacs": pacs}, initial_backoff_s=60)
    assert only(second) == Delivery("pacs", sr_path, PENDING, 1, str(REFUSED))
    assert second.pending_count() == 1
    assert second.deliver_due() == 0  # the backoff survives the restart too
    assert second.deliver_due(time.time() + 61) == 1
    assert only(second) == Delivery("pacs", sr_path, DELIVERED, 2, None) and pacs.calls == [sr_path]


def test_enqueue_if_missing_leaves_known_rows_as_they_are(sr_path, outboxes):
    """Recovery at start queues what the outbox never heard of, and nothing it already knows:
    a delivered SR is not sent again, a failed one is not revived, a pending one keeps its count."""
    delivered, failed, pending, unknown = (sr_path.with_name(f"{n}.dcm") for n in ("delivered", "failed", "pending", "new"))
    pacs = FakeSender(None, DeliveryError("refused", permanent=True), REFUSED)
    outbox = outboxes({"pacs": pacs})
    for path in (delivered, failed, pending):
        outbox.enqueue("pacs", path)
        outbox.deliver_due()
    before = {d.path: d for d in outbox.deliveries()}

    assert [outbox.enqueue_if_missing("pacs", path) for path in (delivered, failed, pending, unknown)] == [
        False, False, False, True]
    after = {d.path: d for d in outbox.deliveries()}
    assert {path: after[path] for path in before} == before
    assert [before[p].state for p in (delivered, failed, pending)] == [DELIVERED, FAILED, PENDING]
    assert after[unknown] == Delivery("pacs", unknown, PENDING, 0, None)


def test_an_unexpected_exception_costs_one_attempt_not_the_lane(sr_path, outboxes):
    """A library bug in a sender (not a DeliveryError) is recorded as a failed attempt; that
    destination's lane goes on and delivers the next file."""
    other = sr_path.with_name("other.dcm")
    pacs = FakeSender(KeyError("ContentSequence"))  # the first call fails, the next succeed
    outbox = outboxes({"pacs": pacs}, initial_backoff_s=60)
    outbox.start()
    outbox.enqueue("pacs", sr_path)
    wait_until(lambda: only(outbox).attempts == 1, 20, "the outbox lane's first attempt")
    assert only(outbox) == Delivery("pacs", sr_path, PENDING, 1, "KeyError: 'ContentSequence'")

    outbox.enqueue("pacs", other)
    wait_until(lambda: {d.path: d.state for d in outbox.deliveries()}.get(other) == DELIVERED, 20,
               "the outbox lane to deliver the next file")
    assert outbox.alive and pacs.calls == [sr_path, other]


def test_a_cycle_failing_over_and_over_is_logged_once_a_minute(tmp_path, outboxes, caplog):
    """The outbox's table gone (a damaged database, here by another connection) fails every
    cycle: logged once with its traceback, then held back (service.observability.RepeatedErrorLog)."""
    outbox = outboxes({"pacs": FakeSender()})
    with sqlite3.connect(tmp_path / "var" / "outbox.sqlite") as other:
        other.execute("ALTER TABLE deliveries RENAME TO moved")
    caplog.set_level(logging.ERROR, logger="service.outputs.outbox")
    outbox.start()
    for _ in range(5):  # five more cycles, woken at once rather than each a second later
        outbox._wake("pacs")
        time.sleep(0.05)
    wait_until(lambda: caplog.records, 10, "the outbox thread's first failed cycle")
    outbox.stop()
    failures = [r for r in caplog.records if r.getMessage().startswith("outbox cycle failed")]
    assert len(failures) == 1 and failures[0].exc_info is not None


def test_a_given_up_delivery_is_counted_logged_as_an_error_and_redelivered_on_request(sr_path, outboxes, caplog,
                                                                                    tmp_path):
    """An EHR refusing a token given in the configuration (permanent) is given up at once: the
    failed gauge and the given-up counter say so per destination, the log at ERROR with what to
    do. `redeliver` (here the function behind `radiomics-cds redeliver`, on the database a
    running outbox uses) puts it back to pending from attempt 0; the running outbox delivers it
    once the EHR takes it."""
    database = tmp_path / "var" / "outbox.sqlite"  # the outboxes fixture's

    def sample(name: str) -> float:
        return INGEST_REGISTRY.get_sample_value(name, {"destination": "fhir"}) or 0.0

    ehr = FakeSender(DeliveryError("FHIR server answered 401: token expired", permanent=True))
    outbox = outboxes({"fhir": ehr, "pacs": FakeSender()})
    given_up_before = sample("rcds_deliveries_given_up_total")
    outbox.enqueue("fhir", sr_path)
    with caplog.at_level(logging.ERROR, logger="service.outputs.outbox"):
        outbox.deliver_due()
    assert only(outbox).state == FAILED
    assert sample("rcds_outbox_failed") == 1.0 and sample("rcds_deliveries_given_up_total") == given_up_before + 1
    assert any(r.levelno == logging.ERROR and "radiomics-cds redeliver" in r.getMessage() for r in caplog.records)

    assert redeliver(database, "pacs") == {}  # another destination's: nothing
    assert redeliver(database) == {"fhir": 1}
    assert (only(outbox).state, only(outbox).attempts, only(outbox).last_error) == (PENDING, 0, None)
    assert outbox.deliver_due() == 1  # the EHR takes it now (the fake's outcomes ran out)
    assert only(outbox).state == DELIVERED and sample("rcds_outbox_failed") == 0.0
    assert ehr.calls == [sr_path, sr_path]

