"""A destination that keeps what it is sent, for the tests of what the worker and the outbox queue.

It satisfies service.outputs.destinations.Destination without being listed anywhere in the
service: that is the point of the tests that use it (a new destination needs no other change).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from service.outputs.artefacts import Artefact


@dataclass
class RecordingDestination:
    name: str
    artefact: Artefact
    sent: list[Path] = field(default_factory=list)

    @property
    def peer(self) -> str:
        return self.name

    def send(self, path: Path) -> None:
        self.sent.append(path)
