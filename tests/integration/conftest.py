"""Fixtures shared by the integration tests that run the service as a process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.outbox import Outboxes
from tests.support.service import QUIET_SECONDS, RunningService


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RunningService]:
    """A fresh `serve` per test with the short quiet period; modules that share one service
    across their tests (or need other settings) define their own `service`."""
    running = RunningService(tmp_path / "var", quiet_seconds=QUIET_SECONDS)
    yield running
    running.stop()


@pytest.fixture
def outboxes(tmp_path: Path) -> Iterator[Outboxes]:
    """Opens Outboxes on one database per test (reopening stands for a restart); all stopped at the end."""
    opener = Outboxes(tmp_path / "var" / "outbox.sqlite")
    yield opener
    opener.stop_all()
