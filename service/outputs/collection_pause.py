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

Outside the pause the collector still ran through everything the process had loaded: after
the warm-up (service.outputs.warm_up) some 450,000 objects (modules, highdicom's tables,
matplotlib's caches), each full collection 0.1-0.2 s, one of which fell into almost every
STS_019 study (drawing its masks took 0.13-0.25 s instead of 0.03 s). freeze_start_up moves
them to the permanent generation, which no collection traverses.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_holders = 0
_resume = False  # whether the collector was enabled when the first holder paused it


def freeze_start_up() -> None:
    """Collect, then freeze what survives: what the process holds once started lives as long as
    it does, so collections need not look at it again. A study's objects alive at that moment
    are frozen too (the warm-up may end while the first study is scored): refcounting still
    frees them; only a reference cycle among them stays, once."""
    gc.collect()
    gc.freeze()


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
