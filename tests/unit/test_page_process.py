"""The tumour-board page rendered in its own process (service.outputs.page_process): the same
bytes as rendered here, and a page still rendered when that process is gone. (That it ends
with serve: tests/integration/test_serve_lifecycle.py.)"""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
from collections.abc import Iterator

import pytest

from service.outputs import page_process
from service.outputs.page_process import PageRenderer
from service.outputs.summary import summary_pdf
from service.outputs.summary_input import SummaryInput, summary_input
from service.outputs.warm_up_sample import sample


@pytest.fixture
def page() -> SummaryInput:
    result, _, image = sample()
    return summary_input(result, sr_sop_instance_uid="2.25.42", key_images=[image])


@pytest.fixture
def renderer() -> Iterator[PageRenderer]:
    pages = PageRenderer()
    yield pages
    pages.close()  # the test's own renderer; the process's (start_page_renderer) ends with it


def test_the_process_renders_the_bytes_rendered_here(page: SummaryInput, renderer: PageRenderer) -> None:
    rendered = renderer.render(page).result()
    assert rendered.startswith(b"%PDF-")
    assert rendered == summary_pdf(page)


def test_a_page_is_rendered_here_when_the_process_died_and_the_next_by_a_new_one(
        page: SummaryInput, renderer: PageRenderer, caplog: pytest.LogCaptureFixture) -> None:
    """A renderer killed (as by the OOM killer) breaks its pool; no real peer can be made to
    die on cue otherwise, so the test kills it."""
    renderer.render(page).result()  # started and warm
    (pid,) = renderer._pool._processes  # the one process of the pool
    os.kill(pid, signal.SIGKILL)
    assert renderer.render(page).result() == summary_pdf(page)
    assert "page renderer process stopped" in caplog.text
    assert renderer.render(page).result() == summary_pdf(page)
    assert pid not in renderer._pool._processes


def test_a_page_cancelled_before_it_is_needed_leaves_the_renderer_free(page: SummaryInput,
                                                                        renderer: PageRenderer) -> None:
    renderer.render(page).result()  # started and warm
    first, second = renderer.render(page), renderer.render(page)
    second.cancel()  # queued behind the first: never rendered
    first.cancel()  # already running: finishes, its bytes unused
    assert renderer.render(page).result() == summary_pdf(page)


def test_once_closed_pages_are_rendered_by_the_caller(page: SummaryInput, renderer: PageRenderer) -> None:
    renderer.close()
    pending = renderer.render(page)
    assert pending.result() == summary_pdf(page)


def test_pages_still_queued_when_the_renderer_closes_are_rendered_by_the_caller(
        page: SummaryInput, renderer: PageRenderer) -> None:
    """A close or a replacement cancels what the process has not taken yet; whoever waits on
    such a page gets it from its own process, so no study fails for its renderer. Four queued:
    the pool hands at most two to its one process ahead of time."""
    renderer.render(page).result()  # started and warm
    queued = [renderer.render(page) for _ in range(4)]
    renderer.close()
    assert [pending.result() for pending in queued] == [summary_pdf(page)] * 4
    assert any(pending._future is not None and pending._future.cancelled() for pending in queued)


def test_the_renderer_ignores_a_ctrl_c_meant_for_serve(page: SummaryInput, renderer: PageRenderer) -> None:
    """A Ctrl-C reaches every process of the terminal's process group; serve stops the renderer
    itself (close, or its exit), so the renderer must not die of it mid-page."""
    renderer.render(page).result()
    (pid,) = renderer._pool._processes
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGTERM)
    assert renderer.render(page).result() == summary_pdf(page)
    assert pid in renderer._pool._processes  # the same process rendered it


def test_the_process_stop_closes_the_renderer_it_started_and_starts_none(
        page: SummaryInput, monkeypatch: pytest.MonkeyPatch) -> None:
    """close_page_renderer at the process's stop (run_ingest): the process's renderer, if any.
    A fresh cache stands in for the process's own, which other tests' workers may share."""
    fresh = functools.cache(PageRenderer)
    monkeypatch.setattr(page_process, "start_page_renderer", fresh)
    page_process.close_page_renderer()
    assert fresh.cache_info().currsize == 0  # none started only to be closed
    renderer = fresh()
    renderer.render(page).result()  # started and warm
    (pid,) = renderer._pool._processes
    page_process.close_page_renderer()
    assert renderer.render(page).result() == summary_pdf(page)  # by the caller, once closed
    assert renderer._pool._processes is None or pid not in renderer._pool._processes


def test_the_process_logs_a_warning_of_the_page_without_its_text(page: SummaryInput,
                                                                  capfd: pytest.CaptureFixture[str]) -> None:
    """Characters the page's font lacks (here in the patient's name) make matplotlib warn,
    quoting them: in the renderer's process, as in its parent, the warning is logged by kind
    and place only (service.observability.configure_logging), never printed with its text.
    (The renderer is started here, not by the fixture: its process writes to the stderr it
    was started with, which capfd captures only while the test runs.)"""
    named = dataclasses.replace(page, study=dataclasses.replace(page.study, patient_name="\u5c71\u7530^\u592a\u90ce"))
    renderer = PageRenderer()
    try:
        renderer.render(named).result()
    finally:
        renderer.close()
    printed = capfd.readouterr().err
    assert "UserWarning raised at" in printed and "text withheld" in printed
    assert "Glyph" not in printed and "CJK" not in printed and "\u5c71" not in printed
