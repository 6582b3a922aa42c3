"""Fixtures shared by the integration tests that run the service as a process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.service import QUIET_SECONDS, RunningService


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RunningService]:
    """A fresh `serve` per test with the short quiet period; modules that share one service
    across their tests (or need other settings) define their own `service`."""
    running = RunningService(tmp_path / "var", quiet_seconds=QUIET_SECONDS)
    yield running
    running.stop()
