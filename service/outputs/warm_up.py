"""Warm-up at start: the first study of a fresh process pays no first-use costs for its outputs.

The first SR a process builds loads highdicom's tables of the DICOM standard (JSON; over a
second while the garbage collector ran through them, service.outputs.collection_pause), and the
first page loads fonts and fills matplotlib's caches: STS_019's SR took 2.3 s in a fresh
`serve` and 0.4 s warm. Building the outputs of a small sample result once, in a
background thread at start, pays those costs while the service waits for its first study. It
runs a study's own sequence of builders (service.outputs.built) and serialises each output, so
a first-use cost added to any of them later is warmed too, and keeps everything in memory: it
writes no file, sends nothing and counts in no metric.

In a process with a page renderer (service.outputs.page_process) the warm-up asks the renderer
for the sample's page, as a study does, and that page is the renderer's first: this process
then never loads matplotlib, which only the renderer uses (1 to 2.5 s of CPU and 45 MB at every
start of serve when the warm-up drew the page here).

Once warm, what the process holds is frozen out of the garbage collector's way
(service.outputs.collection_pause.freeze_start_up).

The sample (service.outputs.warm_up_sample) is made up: nothing of it leaves the process. A
failing warm-up is logged and costs only the warmth: the first study then pays what it paid
before.
"""

from __future__ import annotations

import functools
import io
import logging
import threading
import time

from service.outputs.built import study_outputs
from service.outputs.collection_pause import collection_paused, freeze_start_up
from service.outputs.page_process import PageRenderer
from service.outputs.sr import sr_identity
from service.outputs.warm_up_sample import sample

log = logging.getLogger(__name__)


@collection_paused()  # as a study's outputs are: the collector would take most of the first SR
def warm_up(pages: PageRenderer | None = None) -> None:
    """Build and serialise every output of the sample once, in memory; `pages`: the process's
    page renderer, which studies' pages go to (None: they are drawn here)."""
    result, evidence, image = sample()
    for built in study_outputs(result, evidence, sr_identity(result), key_images=[image], pages=pages):
        built.save(io.BytesIO())


def _run(pages: PageRenderer | None) -> None:
    started = time.monotonic()
    try:
        warm_up(pages)
    except Exception:  # the warmth is an optimisation: never a reason to stop the service
        log.warning("warm-up of the output builders failed; the first study pays their first use",
                    exc_info=True)
    else:
        log.debug("output builders warmed in %.1f s", time.monotonic() - started)
    freeze_start_up()  # also after a failed warm-up: the modules and tables loaded are the process's


@functools.cache
def start_warm_up(pages: PageRenderer | None = None) -> threading.Thread:
    """Run warm_up(pages) in a daemon thread (a stop does not wait for it), once per process
    (and renderer: the process has one, service.outputs.page_process.start_page_renderer): the
    costs it pays are the process's, so a second worker (tests start many) finds them paid.
    Returns the thread."""
    thread = threading.Thread(target=_run, args=(pages,), name="output-warm-up", daemon=True)
    thread.start()
    _started.append(thread)
    return thread


_started: list[threading.Thread] = []
"""The process's warm-up threads (one per renderer: start_warm_up)."""


def wait_for_warm_up(timeout_s: float = 30.0) -> None:
    """At the process's stop, once its page renderer is closed: let a warm-up still running end
    before the interpreter does. A stop in the first seconds after a start finds the warm-up
    waiting for its sample page, which the closed renderer cancels, so the warm-up draws it here
    (service.outputs.page_process.PendingPage). A daemon thread importing matplotlib and
    drawing while the interpreter shuts down can abort the process: the likely cause of serve,
    stopped that early once in CI, ending with SIGABRT instead of its exit status. A hung
    warm-up is left after `timeout_s`, as before."""
    deadline = time.monotonic() + timeout_s
    for thread in _started:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
