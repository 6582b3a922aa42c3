"""Logs an operator can live with: no UIDs above DEBUG, no flood of one repeated error."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from service.observability import RepeatedErrorLog, UidRedactingFilter, redact_uids, uid_token

STUDY_UID = "1.2.840.113619.2.55.3.604688119.971.1249301297.123"


def _record(message: str, *args: object, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("pynetdicom.events", level, __file__, 1, message, args, None)


def test_uids_are_replaced_by_a_stable_token_above_debug() -> None:
    record = _record("Received Store Request: SOP Instance UID %s of %s in %s", STUDY_UID,
                     "1.2.840.10008.5.1.4.1.1.2", "2.25.52392103159008814456136362786142682458")
    UidRedactingFilter().filter(record)
    text = record.getMessage()
    assert STUDY_UID not in text and "1.2.840.10008.5.1.4.1.1.2" not in text and "2.25." not in text
    as_file_name = _record("SR %s/%s.dcm", "var/outbox", STUDY_UID)  # a UID named file is a UID too
    UidRedactingFilter().filter(as_file_name)
    assert STUDY_UID not in as_file_name.getMessage() and as_file_name.getMessage().endswith(".dcm")
    again = _record("study %s", STUDY_UID)
    UidRedactingFilter().filter(again)
    token = again.getMessage().split()[-1]
    assert token.startswith("uid:") and len(token) == 12 and token in text  # same UID, same token


def test_versions_addresses_and_debug_lines_are_left_alone() -> None:
    line = "pynetdicom 3.0.4 from 127.0.0.1:104, 2.255.255.255 and 10.1.2.3, numpy 2.4.6, dcmtk 3.6.7"
    record = _record(line)
    UidRedactingFilter().filter(record)
    assert record.getMessage() == line
    debug = _record("study %s", STUDY_UID, level=logging.DEBUG)
    UidRedactingFilter().filter(debug)
    assert STUDY_UID in debug.getMessage()


def test_the_service_logging_redacts_library_lines() -> None:
    """configure_logging, as every command runs it: a library's line keeps no UID."""
    code = ("import logging; from service.observability import configure_logging; configure_logging('INFO'); "
            f"logging.getLogger('pynetdicom.assoc').warning('Association for study {STUDY_UID}'); "
            f"logging.getLogger('service.worker').error('instance {STUDY_UID}.1: pixel data cannot be decoded')")
    stderr = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert STUDY_UID not in stderr and stderr.count("uid:") == 2, stderr


def test_a_malformed_uid_with_a_leading_zero_component_is_redacted_too() -> None:
    malformed = "1.2.840.10008.05.1.4.1.1.2"  # 05: not a valid component, still the same identifier
    record = _record("instance %s refused", malformed)
    UidRedactingFilter().filter(record)
    assert record.getMessage() == f"instance {uid_token(malformed)} refused"


def test_a_uid_in_a_hidden_file_name_is_redacted_too() -> None:
    """write_atomically's temporary files are named `.<SOP Instance UID>.dcm.<random>.tmp`: an
    OSError about one (a full disk, a read-only volume) names the file."""
    error = OSError(28, "No space left on device", f"/var/rcds/spool/0a1b/.{STUDY_UID}.dcm.x8k2.tmp")
    record = _record("storing failed: %s", error)
    UidRedactingFilter().filter(record)
    assert record.getMessage() == (f"storing failed: [Errno 28] No space left on device: "
                                   f"'/var/rcds/spool/0a1b/.{uid_token(STUDY_UID)}.dcm.x8k2.tmp'")
    # but not inside a longer dotted number, whose tail would otherwise look like a UID
    assert redact_uids("version 3.1.2.840.10008.5.1.4") == "version 3.1.2.840.10008.5.1.4"


def _log_with_traceback(log_format: str, statement: str) -> str:
    """stderr of a process that configures logging as every command does, then runs `statement`."""
    code = ("import logging, threading; from service.observability import configure_logging; "
            f"configure_logging('INFO', {log_format!r}); log = logging.getLogger('service.worker')\n{statement}")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stderr


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_traceback_keeps_no_uid_in_either_format(log_format: str) -> None:
    """log.exception: the KeyError's text (the UID it did not find) is in the traceback."""
    stderr = _log_with_traceback(log_format, f"try:\n    {{}}[{STUDY_UID!r}]\nexcept KeyError:\n"
                                             "    log.exception('lookup failed')")
    assert STUDY_UID not in stderr and f"KeyError: '{uid_token(STUDY_UID)}'" in stderr, stderr
    if log_format == "json":
        (line,) = stderr.splitlines()
        entry = json.loads(line)
        assert entry["message"] == "lookup failed"
        assert entry["exception"].startswith("Traceback") and uid_token(STUDY_UID) in entry["exception"]


@pytest.mark.parametrize("where", ["main", "thread"])
def test_an_uncaught_exception_is_logged_redacted(where: str) -> None:
    """Python's own hooks would print it past the handlers; configure_logging routes it to them."""
    fail = f"raise KeyError({STUDY_UID!r})"
    statement = fail if where == "main" else (
        f"def fail():\n    {fail}\nthread = threading.Thread(target=fail); thread.start(); thread.join()")
    stderr = _log_with_traceback("text", statement)
    assert STUDY_UID not in stderr and "CRITICAL" in stderr and uid_token(STUDY_UID) in stderr, stderr


def test_a_repeated_error_is_logged_once_per_interval_with_a_count(caplog) -> None:
    now = [0.0]
    repeated = RepeatedErrorLog(logging.getLogger("t"), interval_s=60, clock=lambda: now[0])
    with caplog.at_level(logging.ERROR):
        for second in range(0, 150, 1):  # a failing cycle every second for 150 s
            now[0] = float(second)
            repeated.log("worker cycle failed: %s", "disk full")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "worker cycle failed: disk full",
        "worker cycle failed: disk full (59 more like it in the last 60 s not logged)",
        "worker cycle failed: disk full (59 more like it in the last 60 s not logged)",
    ]
