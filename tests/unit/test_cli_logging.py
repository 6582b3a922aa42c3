"""Log settings and `status` as an operator meets them: the level from the flag, the settings
or RCDS_LOG_LEVEL in any case, JSON lines on request, a clear error instead of a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "service.cli"]
STUDY_UID = "1.2.840.113619.2.55.3.604688119.971.1249301297.123"


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=120)


def test_a_lower_case_log_level_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "index.sqlite").touch()
    done = _run("--log-level", "debug", "status", RCDS_VAR_DIR=str(tmp_path))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr


def test_an_unknown_log_level_is_refused_by_name(tmp_path: Path) -> None:
    flag = _run("--log-level", "verbose", "status", RCDS_VAR_DIR=str(tmp_path))
    assert flag.returncode == 2 and "invalid choice: 'VERBOSE'" in flag.stderr
    setting = _run("status", RCDS_VAR_DIR=str(tmp_path), RCDS_LOG_LEVEL="chatty")
    assert setting.returncode == 3 and "log_level must be one of DEBUG, INFO, WARNING, ERROR" in setting.stderr
    assert "Traceback" not in flag.stderr + setting.stderr


def test_json_log_lines_are_objects_with_uids_redacted() -> None:
    code = ("import logging; from service.observability import configure_logging; "
            "configure_logging('INFO', 'json'); "
            f"logging.getLogger('service.worker').error('study {STUDY_UID} failed')")
    stderr = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    (line,) = stderr.splitlines()
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "service.worker"
    assert entry["message"].startswith("study uid:") and STUDY_UID not in line


def test_at_debug_a_dicomweb_query_with_the_patient_id_is_not_logged() -> None:
    """QIDO-RS URLs hold the PatientID: dicomweb-client and urllib3 log them at DEBUG, where
    the service allows UIDs but never identifiers. Their DEBUG lines stay out; INFO passes."""
    code = ("import logging; from service.observability import configure_logging; configure_logging('DEBUG', 'text'); "
            "logging.getLogger('dicomweb_client.web').debug('GET: https://pacs/dicom-web/series?PatientID=MRN0012345'); "
            "logging.getLogger('urllib3.connectionpool').debug('GET /dicom-web/series?PatientID=MRN0012345'); "
            "logging.getLogger('dicomweb_client.web').info('search for series')")
    stderr = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert "MRN0012345" not in stderr and "search for series" in stderr


def test_status_refuses_a_var_dir_without_an_index(tmp_path: Path) -> None:
    done = _run("status", RCDS_VAR_DIR=str(tmp_path / "typo"))
    assert done.returncode == 3 and "no index at" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "typo").exists()  # nothing created
