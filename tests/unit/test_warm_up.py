"""The output builders' warm-up at worker start (service.outputs.warm_up): it leaves nothing
behind, and a failure is logged, never raised."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from service.outputs import warm_up
from service.outputs.sr import build_measurement_report
from service.outputs.summary_input import summary_input
from service.outputs.warm_up_sample import sample

REPO = Path(__file__).resolve().parents[2]

_WATCH = """
import json, os, sys
import service.worker  # what a worker process has loaded before its start calls the warm-up
# The page's modules too: without a renderer the warm-up draws the page here, and matplotlib's
# first import makes its configuration directory (matplotlib's doing, as bytecode is Python's).
import service.outputs.summary
from service.outputs.warm_up import start_warm_up

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
CHANGES = {"os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "os.symlink", "os.link",
           "os.truncate", "os.chmod", "os.utime", "shutil.copyfile", "shutil.move", "tempfile.mkstemp",
           "tempfile.mkdtemp", "socket.connect", "socket.sendto", "subprocess.Popen"}
events = []

def audit(event, args):
    if event == "open":
        path, mode, flags = args
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & WRITE_FLAGS):
            events.append([event, str(path)])
    elif event in CHANGES:
        events.append([event, repr(args)[:200]])

sys.addaudithook(audit)
start_warm_up().join()
print(json.dumps(events))
"""


def test_the_warm_up_writes_nothing_anywhere(tmp_path: Path) -> None:
    """A fresh interpreter (first use is what the warm-up pays) audits every file opened for
    writing, every file-system change, connection and process start while it runs. Bytecode
    caching is Python's own and off here; the working and temporary directories must stay empty."""
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir(), tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": str(tmp)}
    run = subprocess.run([sys.executable, "-c", _WATCH], cwd=cwd, env=env, capture_output=True, text=True,
                         check=False)
    assert run.returncode == 0, run.stderr
    assert "warm-up of the output builders failed" not in run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []
    assert list(cwd.iterdir()) == [] and list(tmp.iterdir()) == []


_RENDERER_ELSEWHERE = """
import sys
import service.roles.serve, service.worker  # what serve and a worker process load
from service.outputs.page_process import start_page_renderer
from service.outputs.warm_up import start_warm_up

start_warm_up(start_page_renderer()).join()
print(sorted(name for name in sys.modules if name.partition(".")[0] in ("matplotlib", "fontTools")))
"""


def test_with_a_page_renderer_the_process_never_loads_matplotlib(tmp_path: Path) -> None:
    """A worker's process gives its pages, the warm-up's sample page included, to its renderer
    (service.outputs.page_process): matplotlib and fontTools, a second and more of CPU to load
    and tens of MiB, are the renderer's alone. A fresh interpreter: another test may have
    loaded them in this one."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    run = subprocess.run([sys.executable, "-c", _RENDERER_ELSEWHERE], cwd=tmp_path, env=env, capture_output=True,
                         text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert "failed" not in run.stderr and "rendering this page here" not in run.stderr, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]"


_STOPPED_AT_ONCE = """
from service.outputs.page_process import PageRenderer
from service.outputs.warm_up import start_warm_up, wait_for_warm_up
renderer = PageRenderer()
thread = start_warm_up(renderer)
renderer.close()  # a stop right after the start: the renderer never began the sample page
wait_for_warm_up()
print("warm-up still running:", thread.is_alive())
"""


def test_a_stop_during_the_warm_up_waits_for_it_before_the_interpreter_ends(tmp_path: Path) -> None:
    """The renderer closed before the sample page began: the warm-up then draws it in this
    process, and the stop waits for that (service.roles.ingest.run_ingest) instead of leaving a
    daemon thread in matplotlib while the interpreter shuts down. A fresh interpreter, which
    exits right after, as serve does."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1", "PYTHONFAULTHANDLER": "1"}
    run = subprocess.run([sys.executable, "-c", _STOPPED_AT_ONCE], cwd=tmp_path, env=env, capture_output=True,
                         text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "warm-up still running: False", run.stderr


def test_a_failing_warm_up_is_logged_and_raises_nothing(monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    # A fake fault: the sample is fixed, so no real input makes the builders fail here; a
    # broken library install or a future builder's new requirement would.
    def broken(pages: object) -> None:
        raise RuntimeError("builder broke")

    uncaught: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(warm_up, "warm_up", broken)
    monkeypatch.setattr(threading, "excepthook", uncaught.append)
    with caplog.at_level(logging.WARNING, logger=warm_up.__name__):
        thread = warm_up.start_warm_up.__wrapped__()  # uncached: the process's own warm-up may have run
        thread.join()
    assert uncaught == [] and not thread.is_alive()
    [record] = [r for r in caplog.records if r.name == warm_up.__name__]
    assert record.levelno == logging.WARNING and "first study pays" in record.getMessage()
    assert record.exc_info is not None and "builder broke" in str(record.exc_info[1])


def test_the_sample_reaches_what_a_study_reaches() -> None:
    """The warm-up is worth its thread only if it takes the builders where a study takes them:
    an SR with an image library and the lesion's measurements, a page with a key-image tile."""
    result, evidence, image = sample()
    sr = build_measurement_report(result, evidence)
    names = [item.ConceptNameCodeSequence[0].CodeMeaning for item in sr.ContentSequence]
    assert "Image Library" in names and "Imaging Measurements" in names
    [lesion] = summary_input(result, sr_sop_instance_uid=str(sr.SOPInstanceUID), key_images=[image]).lesions
    assert lesion.key_image is image and lesion.score is not None
