"""The tumour-board page rendered in a process of its own while the worker builds the SR.

The page (matplotlib; about 0.3 s for STS_019's one lesion, most of it laying out and drawing
its text) and the SR (highdicom, 0.2-0.4 s) are both pure Python: in two threads they
would take turns under the GIL, so one after the other they made most of a small study's
latency. The page needs nothing of the SR but its SOP Instance UID, known before the SR is
built (service.outputs.sr.sr_identity), so a second process renders it meanwhile
(service.outputs.built).

One process per service process (start_page_renderer), started with the output warm-up: by
`serve` while its scorer child starts, so that both are warm when the listener opens, else by
the worker's start; closed by the process's stop (close_page_renderer), after its worker's.
It is spawned (forking a process that runs gRPC and listener threads is unsafe), loads
matplotlib as it starts, and its first page is the output warm-up's sample page
(service.outputs.warm_up, started with it), so the first study finds matplotlib and its fonts
loaded; it ends with its parent however that ends, and renders one page at a time: pages of
concurrent studies queue while their SRs are built. The page is the same function on the same
input as in the worker, so the same bytes (tests/unit/test_page_process.py). A renderer that
died (killed, out of memory) is replaced and that page rendered in the worker's own process: a
study never fails for it; the replacement's first page pays the first render's costs.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool

from service.observability import configure_logging, logging_configuration
from service.outputs.collection_pause import freeze_start_up
from service.outputs.summary_input import SummaryInput

log = logging.getLogger(__name__)

# A page takes 0.2-2 s; a renderer that has not answered in this long is taken as hung.
RENDER_TIMEOUT_SECONDS = 60.0


def render_page(page: SummaryInput) -> bytes:
    """The page's PDF (service.outputs.summary.summary_pdf), matplotlib imported at the first
    call, not with this module.

    A worker's process imports this module but, while its renderer lives, renders no page: the
    renderer's process does. Importing matplotlib and its PDF backend there anyway cost serve
    1.2 s of CPU at every start, and rendering the warm-up's sample page there 1.3 s more
    (service.outputs.warm_up now leaves the sample page to the renderer). A process that renders
    pages itself (the renderer, the offline commands, a worker whose renderer died) pays the
    import at its first page, as it did at its start."""
    from service.outputs.summary import summary_pdf  # matplotlib: only where pages are rendered

    return summary_pdf(page)


def _warm(log_level: str, log_format: str) -> None:
    """The renderer process's start: its parent's logging (a page's library warnings quote
    what they could not draw, such as the characters of a patient's name a font lacks: logged
    without their text, as in the parent, not printed), deaf to the stop signals of its
    parent's process group, ending with its parent; the page's modules loaded. Its first page
    (the warm-up's sample, service.outputs.warm_up) fills matplotlib's caches, then what it holds
    is frozen (_render_here); a sample drawn here too was drawn twice at every start."""
    global _first_page_to_come
    configure_logging(log_level, log_format)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, name="parent-watch", daemon=True).start()
    import service.outputs.summary  # noqa: F401 (render_page's import, done now)
    _first_page_to_come = True


_first_page_to_come = False
"""In the renderer's process, until its first page is drawn."""


def _render_here(page: SummaryInput) -> bytes:
    """render_page in the renderer's process; after its first page, what the process holds
    (modules, fonts, matplotlib's caches) is frozen out of the collector's way
    (service.outputs.collection_pause.freeze_start_up), as the worker's own start-up is."""
    global _first_page_to_come
    pdf = render_page(page)
    if _first_page_to_come:
        _first_page_to_come = False
        freeze_start_up()
    return pdf


def _exit_with_parent() -> None:
    """However the worker's process ends (exit, crash, kill -9), its renderer ends too: nothing
    else would end it (its pipes are not closed by the parent's death alone)."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)


class PendingPage:
    """A page being rendered: `result` waits for its PDF bytes (rendering it here if the
    renderer cannot), `cancel` gives it up when its study failed before needing it."""

    def __init__(self, renderer: PageRenderer, pool: ProcessPoolExecutor | None, future: Future[bytes] | None,
                 page: SummaryInput) -> None:
        self._renderer, self._pool, self._future, self._page = renderer, pool, future, page

    def result(self) -> bytes:
        """The PDF, drawn here when the renderer cannot: broken, silent, or this page cancelled
        before it began (a renderer replaced, or closed at a stop, cancels what it had not
        taken). A study never fails for its renderer; a stop during the start-up warm-up has the
        warm-up's sample drawn here, once."""
        if self._future is not None and self._pool is not None:
            try:
                return self._future.result(timeout=RENDER_TIMEOUT_SECONDS)
            except BrokenProcessPool:
                self._renderer.replace(self._pool, "stopped")
            except FutureTimeout:
                self._renderer.replace(self._pool, f"did not answer in {RENDER_TIMEOUT_SECONDS:g} s")
            except CancelledError:
                pass
        return render_page(self._page)

    def cancel(self) -> None:
        if self._future is not None:
            self._future.cancel()


class PageRenderer:
    """A warm process that renders pages (render_page) in the background."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._pool = self._start()

    @staticmethod
    def _start() -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_warm,
                                   initargs=logging_configuration())
        pool.submit(int)  # the process starts (and warms up) at its first task: now, not at the first study's
        return pool

    def render(self, page: SummaryInput) -> PendingPage:
        """Start rendering `page`; once closed, or with the pool broken, it is rendered by the
        caller when it asks for the result."""
        with self._lock:
            pool = None if self._closed else self._pool
        try:
            future = pool.submit(_render_here, page) if pool is not None else None
        except (BrokenProcessPool, RuntimeError):  # broken, or shut down since
            future = None
        return PendingPage(self, pool, future, page)

    def replace(self, broken: ProcessPoolExecutor, why: str) -> None:
        """A new process in place of `broken` (once, whichever study noticed first; none once
        closed)."""
        with self._lock:
            if self._pool is broken and not self._closed:
                log.warning("the page renderer process %s; rendering this page here and starting a new one", why)
                broken.shutdown(wait=False, cancel_futures=True)
                self._pool = self._start()

    def close(self) -> None:
        """Stop the renderer without waiting for it (a stop must not hang on a hung renderer; its
        process ends after its current page, or with this one); later pages are rendered by
        their callers."""
        with self._lock:
            self._closed = True
            pool = self._pool
        pool.shutdown(wait=False, cancel_futures=True)


@functools.cache
def start_page_renderer() -> PageRenderer:
    """The process's page renderer, started at the first call: the costs its start pays (a
    Python with matplotlib) are paid once, wherever it is first asked for."""
    return PageRenderer()


def close_page_renderer() -> None:
    """Close the process's page renderer, if one was started: at the process's stop, once no
    study needs it (its worker has stopped), so that its process ends with the stop rather
    than at this interpreter's exit. Workers started later in this process (tests start many)
    then render their pages themselves."""
    if start_page_renderer.cache_info().currsize:
        start_page_renderer().close()
