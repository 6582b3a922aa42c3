"""Opening Outboxes in tests (tests/unit/test_outbox.py with fake destinations, the delivery
tests with real peers): one SQLite file per test, reopened to stand for a restart."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from service.outputs.destinations import Destination
from service.outputs.outbox import Delivery, Outbox


class Outboxes:
    """Opens Outboxes on one database (reopening = a restart) and stops them all at the end."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.opened: list[Outbox] = []

    def __call__(self, destinations: Iterable[Destination], **options) -> Outbox:
        self.opened.append(Outbox(self.database, destinations, **options))
        return self.opened[-1]

    def stop_all(self) -> None:
        for outbox in self.opened:
            try:
                outbox.stop()
            except Exception:  # already stopped by the test (a restart)
                pass


def only(outbox: Outbox) -> Delivery:
    """The outbox's one delivery row (fails if there are others)."""
    deliveries = outbox.deliveries()
    assert len(deliveries) == 1, deliveries
    return deliveries[0]
