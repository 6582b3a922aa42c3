"""Cyclic garbage collection paused while a study's outputs are built (service.pipeline).

highdicom builds an SR by deep-copying its content tree and wrapping every item in new objects:
tens of thousands of container objects for a ten-lesion report, all alive until the outputs are
written. Each allocation burst makes CPython's collector traverse them again: on the 10-lesion
bench study, 180 to 190 collections during the SR's build (a fifth of it); paused around the
build alone, the work only moved into the page's rendering (the run's collector time did not
change). Paused over the whole writing, reference counting frees the SR and the page when they
are dropped, and the one collection on resuming finds little left (the run's collector time
fell from 0.4-1.0 s to 0.04-0.3 s). In a fresh process the first SR loads highdicom's JSON
tables of the standard, during which a running collector took most of that first build.

The collector is process-wide and study workers run concurrently, so the pause is counted: it
ends when the last writer that asked for it is done, and a collector disabled by someone else
before the first pause stays disabled.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_holders = 0
_resume = False  # whether the collector was enabled when the first holder paused it


@contextmanager
def collection_paused() -> Iterator[None]:
    """Disable the cyclic collector for the block; re-enable it when the last holder leaves,
    also when the block raises."""
    global _holders, _resume
    with _lock:
        if _holders == 0:
            _resume = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _resume:
                gc.enable()
