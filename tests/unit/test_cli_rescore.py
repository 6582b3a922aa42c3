"""`radiomics-cds rescore` sends failed or named studies back to be scored, in the service's own
index file (made by the real StudyIndex, the instances' files real DICOM in the var directory),
and leaves alone what it cannot or need not send back. That the worker then scores them is
tests/unit/test_worker.py's (test_a_failed_study_sent_back_by_rescore_is_scored_by_the_worker).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

from pydicom.uid import generate_uid

from service.config import load_config
from service.ingest.index import DONE, FAILED, PROCESSING, RECEIVING, InstanceRecord, StudyIndex
from service.ingest.spool import Spool
from service.retention import cutoff, remove
from service.sop_classes import CT_IMAGE, RT_STRUCTURE_SET
from tests.support import small_study

CLI = [sys.executable, "-m", "service.cli"]
STUDIES = {"failed": "1.2.826.0.1.3680043.10.544.1", "no-contours": "1.2.826.0.1.3680043.10.544.2",
           "files-gone": "1.2.826.0.1.3680043.10.544.3", "done": "1.2.826.0.1.3680043.10.544.4",
           "receiving": "1.2.826.0.1.3680043.10.544.5", "processing": "1.2.826.0.1.3680043.10.544.6",
           "without-priors": "1.2.826.0.1.3680043.10.544.7"}
DONE_RESULT = "1.2.826.0.1.3680043.10.544.14"
WITHOUT_PRIORS_RESULT = "1.2.826.0.1.3680043.10.544.17"
REASON = "scored again on request (radiomics-cds rescore)"


def _index_study(index: StudyIndex, var_dir: Path, study_uid: str, *, contours: bool = True) -> None:
    """A CT slice and, with `contours`, an RTSTRUCT: files in the spool, rows in the index."""
    datasets = [small_study.ct_slices()[0], *([small_study.rtstruct()] if contours else [])]
    paths = small_study.write(var_dir / "spool" / study_uid, datasets)
    for number, (sop_class, path) in enumerate(zip((CT_IMAGE, RT_STRUCTURE_SET), paths)):
        index.add_instance(InstanceRecord(f"{study_uid}.{number}", sop_class, study_uid, f"{study_uid}.9", "CT",
                                          small_study.FRAME_UID, (0.0,), path, time.time()))


def _var_dir(tmp_path: Path) -> Path:
    """A study of each kind rescore tells apart (STUDIES): three failed (one to be scored again,
    one without contours, one whose spooled files are gone), one done, one done while no prior
    source answered, one waiting to be scored (receiving) and one being scored (processing)."""
    config = load_config(environ={"RCDS_VAR_DIR": str(tmp_path / "var")})
    index = StudyIndex(config.index_path)
    try:
        for name, study_uid in STUDIES.items():
            _index_study(index, config.var_dir, study_uid, contours=name != "no-contours")
            if name == "receiving":
                continue
            assert index.claim(study_uid)
            if name == "done":
                index.finish(study_uid, DONE, result=DONE_RESULT)
            elif name == "without-priors":
                index.finish(study_uid, DONE, result=WITHOUT_PRIORS_RESULT, priors_unavailable=True)
            elif name != "processing":
                index.finish(study_uid, FAILED, error="scorer: UNAVAILABLE: failed to connect to all addresses")
        (index.instances(STUDIES["files-gone"])[0].path).unlink()
    finally:
        index.close()
    return config.var_dir


def _rescore(var_dir: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(CLI + ["rescore", *arguments], env={**os.environ, "RCDS_VAR_DIR": str(var_dir)},
                          capture_output=True, text=True, timeout=120)


def _key(uid: str) -> str:
    return hashlib.sha256(uid.encode()).hexdigest()[:16]


def _token(uid: str) -> str:
    return "uid:" + _key(uid)[:8]


def _row(var_dir: Path, study_uid: str) -> tuple[str, int, int, str | None, str | None]:
    """(state, attempts, generation, error, result), read from the index file."""
    with closing(sqlite3.connect(var_dir / "index.sqlite")) as db:
        return db.execute("SELECT state, attempts, generation, error, result FROM studies"
                          " WHERE study_instance_uid = ?", (study_uid,)).fetchone()


def _rows(var_dir: Path) -> dict[str, tuple[str, int, int, str | None, str | None]]:
    return {name: _row(var_dir, uid) for name, uid in STUDIES.items()}


def test_failed_sends_back_every_failed_study_that_scoring_again_can_help(tmp_path: Path) -> None:
    """Of the three failed studies, the one with its contours and files goes back to receiving
    at a new generation from attempt 0, with rescore's reason; the one without contours and the
    one whose files are gone stay failed, each with the reason on stderr, and the exit status
    is 1. Studies not failed are not touched. No UID is printed, only keys and tokens."""
    var_dir = _var_dir(tmp_path)
    before = _rows(var_dir)
    done = _rescore(var_dir, "--failed")

    assert done.returncode == 1, done.stderr
    failed = STUDIES["failed"]
    assert done.stdout.splitlines() == [f"{_key(failed)}  {_token(failed)}  queued to be scored again (was failed)"]
    no_contours, files_gone = STUDIES["no-contours"], STUDIES["files-gone"]
    assert sorted(done.stderr.splitlines()) == sorted([
        f"{_key(no_contours)}  {_token(no_contours)}  not queued (failed): no RTSTRUCT or SEG was received: it is "
        "scored once one arrives",
        f"{_key(files_gone)}  {_token(files_gone)}  not queued (failed): 1 of its 2 received instances are no longer "
        "in the spool: send the study again, then rescore it"])
    assert not any(uid in done.stdout + done.stderr for uid in STUDIES.values())

    after = _rows(var_dir)
    assert before["failed"][:2] == (FAILED, 1)
    assert after["failed"] == (RECEIVING, 0, before["failed"][2] + 1, REASON, None)
    assert {name: row for name, row in after.items() if name != "failed"} == {
        name: row for name, row in before.items() if name != "failed"}


def test_named_studies_by_key_token_or_uid_done_ones_sent_back_others_left_as_they_are(tmp_path: Path) -> None:
    """The done study (named by its key) goes back to receiving keeping its result, for the new
    SR to name as predecessor; the receiving one (by its token) and the one being scored (by its
    Study Instance UID, printed as its token) are said to be so and left unchanged; a name of no
    study is said to be unknown on stderr, with exit status 1, the others handled all the same."""
    var_dir = _var_dir(tmp_path)
    before = _rows(var_dir)
    done_uid, receiving, processing = STUDIES["done"], STUDIES["receiving"], STUDIES["processing"]
    unknown = "1.2.826.0.1.3680043.10.544.99"
    done = _rescore(var_dir, _key(done_uid), _token(receiving), processing, unknown)

    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == [
        f"{_key(done_uid)}  {_token(done_uid)}  queued to be scored again (was done)",
        f"{_key(receiving)}  {_token(receiving)}  already queued to be scored: nothing changed",
        f"{_key(processing)}  {_token(processing)}  being scored now: nothing changed"]
    assert done.stderr.splitlines() == [f"{_token(unknown)}: no such study in the index"]
    assert not any(uid in done.stdout + done.stderr for uid in [*STUDIES.values(), unknown])

    after = _rows(var_dir)
    assert after["done"] == (RECEIVING, 0, before["done"][2] + 1, REASON, DONE_RESULT)
    assert after["receiving"] == before["receiving"] and after["processing"] == before["processing"]
    assert after["processing"][0] == PROCESSING


def test_priors_unavailable_sends_back_exactly_the_done_studies_scored_without_their_priors(tmp_path: Path) -> None:
    """The study done while no prior source answered goes back to receiving, keeping its result
    for the new SR to name as predecessor; the study done with its priors, the failed ones and
    those in progress are not touched. Once it is receiving, none is left to send back."""
    var_dir = _var_dir(tmp_path)
    before = _rows(var_dir)
    done = _rescore(var_dir, "--priors-unavailable")
    assert (done.returncode, done.stderr) == (0, "")
    without = STUDIES["without-priors"]
    assert done.stdout.splitlines() == [f"{_key(without)}  {_token(without)}  queued to be scored again (was done)"]

    after = _rows(var_dir)
    assert before["without-priors"][:2] == (DONE, 1)
    assert after["without-priors"] == (RECEIVING, 0, before["without-priors"][2] + 1, REASON, WITHOUT_PRIORS_RESULT)
    assert {name: row for name, row in after.items() if name != "without-priors"} == {
        name: row for name, row in before.items() if name != "without-priors"}
    again = _rescore(var_dir, "--priors-unavailable")
    assert (again.returncode, again.stdout, again.stderr) == (
        0, "no study scored while its priors were unavailable\n", "")


def test_show_uids_prints_the_study_instance_uid_and_a_study_named_twice_is_sent_back_once(tmp_path: Path) -> None:
    var_dir = _var_dir(tmp_path)
    failed = STUDIES["failed"]
    generation = _row(var_dir, failed)[2]
    done = _rescore(var_dir, "--show-uids", failed, _key(failed))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [f"{_key(failed)}  {failed}  queued to be scored again (was failed)"]
    assert _row(var_dir, failed)[:3] == (RECEIVING, 0, generation + 1)


def test_a_token_two_studies_share_is_refused_naming_neither(tmp_path: Path) -> None:
    """Tokens are 8 hex digits: these two UIDs (found by trying 1.2.826.0.1.3680043.10.543.n in
    turn) share one. Their keys still tell them apart."""
    first, second = "1.2.826.0.1.3680043.10.543.24605", "1.2.826.0.1.3680043.10.543.116589"
    assert _token(first) == _token(second) and _key(first) != _key(second)
    config = load_config(environ={"RCDS_VAR_DIR": str(tmp_path / "var")})
    index = StudyIndex(config.index_path)
    for study_uid in (first, second):
        _index_study(index, config.var_dir, study_uid)
        assert index.claim(study_uid)
        index.finish(study_uid, FAILED, error="internal error (RuntimeError); see the service log")
    index.close()

    done = _rescore(config.var_dir, _token(first))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.strip() == f"{_token(first)}: names 2 studies; give the key status shows for the one meant"
    assert _row(config.var_dir, first)[0] == _row(config.var_dir, second)[0] == FAILED
    assert _rescore(config.var_dir, _key(second)).returncode == 0
    assert (_row(config.var_dir, first)[0], _row(config.var_dir, second)[0]) == (FAILED, RECEIVING)


def test_a_study_whose_files_retention_removed_is_refused_saying_so_until_it_is_sent_again(tmp_path: Path) -> None:
    """Retention removed the spooled files of a done study: rescore refuses it, naming retention
    and the day. Sent again (each instance stored again at its path and indexed, as the listener
    does: the same SOP Instance UIDs, so nothing new to the index), it is sent back to be scored."""
    config = load_config(environ={"RCDS_VAR_DIR": str(tmp_path / "var"), "RCDS_SPOOL_RETENTION_DAYS": "30"})
    index = StudyIndex(config.index_path)
    study_uid = STUDIES["done"]
    try:
        _index_study(index, config.var_dir, study_uid)
        assert index.claim(study_uid) and index.finish(study_uid, DONE, result=DONE_RESULT)
        records = index.instances(study_uid)
        contents = {record.path: record.path.read_bytes() for record in records}
        study = index.study(study_uid)
        assert remove(index, Spool(config.spool_dir), study, cutoff(30, time.time() + 31 * 86400)) is not None
        removed_at = index.study(study_uid).files_removed_at
    finally:
        index.close()
    day = time.strftime("%Y-%m-%d", time.gmtime(removed_at))

    refused = _rescore(config.var_dir, _key(study_uid))
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr.splitlines() == [
        f"{_key(study_uid)}  {_token(study_uid)}  not queued (done): 2 of its 2 received instances were removed from "
        f"the spool by retention on {day} UTC (spool_retention_days): send the study again, then rescore it"]

    index = StudyIndex(config.index_path)
    try:
        for record in records:
            record.path.write_bytes(contents[record.path])
            assert not index.add_instance(dataclasses.replace(record, received_at=time.time()))
    finally:
        index.close()
    queued = _rescore(config.var_dir, _key(study_uid))
    assert (queued.returncode, queued.stderr) == (0, "")
    assert queued.stdout == f"{_key(study_uid)}  {_token(study_uid)}  queued to be scored again (was done)\n"
    assert _row(config.var_dir, study_uid)[0] == RECEIVING


def test_a_study_whose_files_retention_removed_is_queued_when_a_prior_source_can_retrieve_them(tmp_path: Path) -> None:
    """With a prior source that retrieves images (DICOMweb), the worker puts the removed files
    back from PACS before scoring (service.restoration): rescore queues the study, saying so. A
    study without contours is still refused."""
    environ = {"RCDS_VAR_DIR": str(tmp_path / "var"), "RCDS_PRIOR_PROVIDERS": "dicomweb",
               "RCDS_PRIOR_DICOMWEB_URL": "http://127.0.0.1:1/dicom-web"}
    config = load_config(environ=environ)
    index = StudyIndex(config.index_path)
    study_uid, without_contours = STUDIES["done"], STUDIES["no-contours"]
    try:
        for uid in (study_uid, without_contours):
            _index_study(index, config.var_dir, uid, contours=uid == study_uid)
            assert index.claim(uid) and index.finish(uid, DONE, result=generate_uid())
            assert remove(index, Spool(config.spool_dir), index.study(uid), cutoff(30, time.time() + 31 * 86400))
    finally:
        index.close()

    done = subprocess.run(CLI + ["rescore", _key(study_uid), _key(without_contours)], env={**os.environ, **environ},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stdout == (f"{_key(study_uid)}  {_token(study_uid)}  queued to be scored again (was done); its "
                           "instances missing from the spool are retrieved from PACS first\n")
    assert done.stderr == (f"{_key(without_contours)}  {_token(without_contours)}  not queued (done): no RTSTRUCT or "
                           "SEG was received: it is scored once one arrives\n")
    assert _row(config.var_dir, study_uid)[0] == RECEIVING


def test_nothing_failed_and_no_index_and_a_wrong_command_line(tmp_path: Path) -> None:
    """No failed study: said, exit 0. A var_dir without an index is refused (exit 3), not
    created; none of --failed, --priors-unavailable and studies, or more than one, is a usage
    error (exit 2)."""
    config = load_config(environ={"RCDS_VAR_DIR": str(tmp_path / "var")})
    StudyIndex(config.index_path).close()
    nothing = _rescore(config.var_dir, "--failed")
    assert (nothing.returncode, nothing.stdout, nothing.stderr) == (0, "no failed study\n", "")

    missing = _rescore(tmp_path / "nothing", "--failed")
    assert missing.returncode == 3 and "no index at" in missing.stderr and not (tmp_path / "nothing").exists()
    assert _rescore(config.var_dir).returncode == 2
    assert _rescore(config.var_dir, "--failed", _key(STUDIES["failed"])).returncode == 2
    assert _rescore(config.var_dir, "--priors-unavailable", _key(STUDIES["failed"])).returncode == 2
    assert _rescore(config.var_dir, "--failed", "--priors-unavailable").returncode == 2
