"""`radiomics-cds score` shows its progress (lesions scored of all, the lesion just scored by its
number, and the rate) on a terminal, and nothing of the kind when its stderr is a pipe. The
terminal is a real pseudo-terminal."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.support import small_study
from tests.support.terminal import run_on_terminal

CLI = [sys.executable, "-m", "service.cli"]


def test_score_shows_lesion_progress_on_a_terminal_only(tmp_path: Path) -> None:
    small_study.write(tmp_path / "ct", small_study.ct_slices())
    (seg,) = small_study.write(tmp_path / "seg", [small_study.seg()])
    command = CLI + ["score", "--ct", str(tmp_path / "ct"), "--seg", str(seg)]

    run = run_on_terminal(command + ["--out", str(tmp_path / "terminal")])
    assert run.returncode == 0, run.terminal
    # The SEG has one segment: one progress line, ended once it is done (the log follows it).
    shown = re.findall(r"\r(scored [^\r\n]*)(\r\n)?", run.terminal)
    assert len(shown) == 1 and re.fullmatch(r"scored 1/1 lesions \(lesion 1\), \d+\.\d lesions/s", shown[0][0]), \
        run.terminal
    assert shown[0][1] == "\r\n", run.terminal  # the terminal shows a newline as CR LF

    piped = subprocess.run(command + ["--out", str(tmp_path / "piped")], capture_output=True, text=True)
    assert piped.returncode == 0, piped.stderr
    assert "\r" not in piped.stderr and "scored" not in piped.stderr and "lesions/s" not in piped.stderr
