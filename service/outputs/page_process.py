"""The tumour-board page rendered in a process of its own while the worker builds the SR.

The page (matplotlib; 0.4-0.6 s for STS_019's one lesion, most of it fontTools subsetting the
embedded fonts) and the SR (highdicom, 0.25-0.4 s) are both pure Python: in two threads they
would take turns under the GIL, so one after the other they made most of a small study's
latency. The page needs nothing of the SR but its SOP Instance UID, known before the SR is
built (service.outputs.sr.sr_instance_uid), so a second process renders it meanwhile.

One process per worker process (start_page_renderer), started with the output warm-up: by
`serve` while its scorer child starts, so that both are warm when the listener opens, else by
the worker's start. It is spawned (forking a process that runs gRPC and listener threads is
unsafe), renders the warm-up's sample page first (service.outputs.warm_up.sample) so the first
study finds matplotlib and its fonts loaded, ends with its parent however that ends, and
renders one page at a time: pages of concurrent studies queue while their SRs are built. The
page is the same function on the same input as in the worker, so the same bytes
(tests/unit/test_page_process.py). A renderer that died (killed, out of memory) is replaced and
that page rendered in the worker's own process: a study never fails for it.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from service.outputs.collection_pause import freeze_start_up
from service.outputs.summary import summary_pdf
from service.outputs.summary_input import SummaryInput, summary_input
from service.outputs.warm_up import sample

log = logging.getLogger(__name__)

PendingPage = Callable[[], bytes]
"""A page being rendered: called, waits for its PDF bytes."""


def _warm() -> None:
    """The renderer process's start: it ends with its parent; one sample page, then what it
    holds frozen."""
    threading.Thread(target=_exit_with_parent, name="parent-watch", daemon=True).start()
    result, _, image = sample()
    summary_pdf(summary_input(result, sr_sop_instance_uid="2.25.1", key_images=[image]))
    freeze_start_up()


def _exit_with_parent() -> None:
    """However the worker's process ends (exit, crash, kill -9), its renderer ends too: nothing
    else would end it (its pipes are not closed by the parent's death alone)."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)


class PageRenderer:
    """A warm process that renders pages (summary_pdf) in the background."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = self._start()

    @staticmethod
    def _start() -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_warm)
        pool.submit(int)  # the process starts (and warms up) at its first task: now, not at the first study's
        return pool

    def render(self, page: SummaryInput) -> PendingPage:
        """Start rendering `page`; returns what waits for it."""
        with self._lock:
            pool = self._pool
        try:
            future: Future[bytes] | None = pool.submit(summary_pdf, page)
        except BrokenProcessPool:
            future = None

        def pending() -> bytes:
            if future is not None:
                try:
                    return future.result()
                except BrokenProcessPool:
                    pass
            self._replace(pool)
            return summary_pdf(page)
        return pending

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """A new process in place of `broken` (once, whichever study noticed first)."""
        with self._lock:
            if self._pool is broken:
                log.warning("the page renderer process stopped; rendering this page here and starting a new one")
                broken.shutdown(wait=False, cancel_futures=True)
                self._pool = self._start()


@functools.cache
def start_page_renderer() -> PageRenderer:
    """The process's page renderer, started at the first call: the costs its start pays (a
    Python with matplotlib, a sample page) are paid once, wherever it is first asked for."""
    return PageRenderer()
