"""Cyclic garbage collection paused while a large document is built.

highdicom builds an SR by deep-copying its content tree and wrapping every item in new objects:
some ten thousand container objects for a ten-lesion report. Each allocation burst makes
CPython's collector run its young generations again and again over objects that all stay alive
until the build returns; measured on the 10-lesion bench study, that was 180 to 190 collections
and about a fifth of the build. Nothing the build makes is garbage before it ends, so pausing
the collector loses nothing: reference counting still frees what is dropped, and the first
collection after the pause sees the survivors once.

The collector is process-wide and study workers run concurrently, so the pause is counted: it
ends when the last build that asked for it ends, and a collector disabled by someone else
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
