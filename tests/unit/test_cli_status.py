"""`radiomics-cds status` shows how long each study has been in its state and where its result
stands at each destination, and the deliveries of each destination by state, read from the
service's own index and outbox files.

The files are made by the real StudyIndex and Outbox: the PACS destination is the real C-STORE
sender aimed at a loopback port nobody listens on (a real connection refusal), the EHR one a
destination that takes whatever it is given (tests/support/destinations.py), so that one
destination fails and the other succeeds.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from service.commands.status import human_age
from service.config import load_config
from service.ingest.index import DONE, FAILED, InstanceRecord, StudyIndex
from service.outputs.artefacts import Artefact, artefact_path
from service.outputs.destinations import PacsByCStore
from service.outputs.outbox import Outbox
from tests.support import small_study
from tests.support.destinations import RecordingDestination
from tests.support.processes import LOOPBACK, free_port
from tests.support.service import STATUS_COLUMNS, status_rows

CLI = [sys.executable, "-m", "service.cli"]
STUDIES = {"failed-pacs": "1.2.826.0.1.3680043.10.543.1", "pending-pacs": "1.2.826.0.1.3680043.10.543.2",
           "input-error": "1.2.826.0.1.3680043.10.543.3"}
RESULTS = {"failed-pacs": "1.2.826.0.1.3680043.10.543.11", "pending-pacs": "1.2.826.0.1.3680043.10.543.12"}
FAR_FUTURE = time.time() + 10**9  # every retry is due


def _index_study(index: StudyIndex, study_uid: str, path: Path) -> None:
    index.add_instance(InstanceRecord(f"{study_uid}.1", "1.2.840.10008.5.1.4.1.1.2", study_uid, f"{study_uid}.2", "CT",
                                      "1.2.3", (0.0,), path, time.time()))
    assert index.claim(study_uid)


def _var_dir(tmp_path: Path) -> Path:
    """Two done studies (both delivered to the EHR; to the PACS one failed after 2 attempts, one
    pending after 1) and a failed study, which has no result to deliver."""
    config = load_config(environ={"RCDS_VAR_DIR": str(tmp_path / "var")})
    config.outbox_dir.mkdir(parents=True)
    (ct_file,) = small_study.write(tmp_path / "ct", small_study.ct_slices()[:1])
    index = StudyIndex(config.index_path)
    outbox = Outbox(config.outbox_database, [PacsByCStore(LOOPBACK, free_port(), "PACS", "RCDS"),
                                             RecordingDestination("fhir", Artefact.FHIR_BUNDLE)], max_attempts=2)
    try:
        for name, study_uid in STUDIES.items():
            _index_study(index, study_uid, ct_file)
            if name not in RESULTS:
                index.finish(study_uid, FAILED, error="no CT series in the study")
                continue
            index.finish(study_uid, DONE, result=RESULTS[name])
            for destination, artefact in (("pacs", Artefact.SR), ("fhir", Artefact.FHIR_BUNDLE)):
                path = artefact_path(config.outbox_dir, RESULTS[name], artefact)
                if artefact is Artefact.FHIR_BUNDLE:  # a valid Bundle: the session validates every one written
                    path.write_text(json.dumps({"resourceType": "Bundle", "type": "transaction"}))
                else:
                    shutil.copy(ct_file, path)
                outbox.enqueue(destination, path)
            outbox.deliver_due(FAR_FUTURE)
            if name == "failed-pacs":
                outbox.deliver_due(FAR_FUTURE)  # the second and last attempt
    finally:
        outbox.stop()
        index.close()
    return config.var_dir


def _status(var_dir: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(CLI + ["status", *flags], env={**os.environ, "RCDS_VAR_DIR": str(var_dir)},
                          capture_output=True, text=True, timeout=120)


def test_status_shows_each_results_delivery_per_destination_and_counts(tmp_path: Path) -> None:
    var_dir = _var_dir(tmp_path)
    shown = _status(var_dir, "--show-uids")
    assert shown.returncode == 0, shown.stderr
    counts = shown.stdout.split("\n\n")[1]
    rows = {row["study"]: row for row in status_rows(shown.stdout)}
    assert set(rows) == set(STUDIES.values())

    failed = rows[STUDIES["failed-pacs"]]
    assert failed["state"] == "done"
    assert failed["result or reason"].startswith(f"SR {RESULTS['failed-pacs']}  deliveries: pacs failed (2 attempts: ")
    assert f"no association with PACS at {LOOPBACK}" in failed["result or reason"]
    assert failed["result or reason"].endswith(", fhir delivered")
    pending = rows[STUDIES["pending-pacs"]]
    assert pending["result or reason"].endswith("deliveries: pacs pending (1 attempt), fhir delivered")
    assert (rows[STUDIES["input-error"]]["state"], rows[STUDIES["input-error"]]["result or reason"]) == (
        "failed", "no CT series in the study")

    assert [line.split() for line in counts.splitlines()] == [
        ["destination", "pending", "delivered", "failed"], ["fhir", "0", "2", "0"], ["pacs", "1", "0", "1"]]


def test_status_shows_how_long_each_study_has_been_in_its_state(tmp_path: Path) -> None:
    """Receiving: since its first instance, however recent its last; processing and failed:
    since the claim and the outcome (just now), not since their instances of days ago. The
    columns line up under the header whatever the age's width."""
    config = load_config(environ={"RCDS_VAR_DIR": str(tmp_path / "var")})
    (ct_file,) = small_study.write(tmp_path / "ct", small_study.ct_slices()[:1])
    index = StudyIndex(config.index_path)
    now = time.time()
    try:
        for uid, received_at in ((STUDIES["pending-pacs"], now - (2 * 3600 + 5 * 60 + 10)), (STUDIES["pending-pacs"], now - 30),
                                 (STUDIES["failed-pacs"], now - 2 * 86400), (STUDIES["input-error"], now - 3 * 86400)):
            index.add_instance(InstanceRecord(f"{uid}.{received_at}", "1.2.840.10008.5.1.4.1.1.2", uid, f"{uid}.2", "CT",
                                              "1.2.3", (0.0,), ct_file, received_at))
        assert index.claim(STUDIES["failed-pacs"]) and index.claim(STUDIES["input-error"])
        index.finish(STUDIES["input-error"], FAILED, error="no CT series in the study")
    finally:
        index.close()
    shown = _status(config.var_dir)
    assert shown.returncode == 0, shown.stderr
    header = shown.stdout.splitlines()[0]  # each column as wide as its widest cell, two spaces apart
    assert [header.index(name) for name in STATUS_COLUMNS] == [0, 16 + 2, 18 + len("uid:12345678") + 2,
                                                               32 + len("processing") + 2, 44 + len("2h 5m") + 2]
    rows = {row["study"]: row for row in status_rows(shown.stdout)}
    ages = {uid: (rows[_token(uid)]["state"], rows[_token(uid)]["age"]) for uid in STUDIES.values()}
    assert ages[STUDIES["pending-pacs"]] == ("receiving", "2h 5m")
    assert ages[STUDIES["failed-pacs"]][0] == "processing" and re.fullmatch(r"\d{1,2}s", ages[STUDIES["failed-pacs"]][1])
    assert ages[STUDIES["input-error"]][0] == "failed" and re.fullmatch(r"\d{1,2}s", ages[STUDIES["input-error"]][1])
    assert rows[_token(STUDIES["input-error"])]["result or reason"] == "no CT series in the study"


def test_status_shows_a_done_study_scored_without_its_priors_as_such(tmp_path: Path) -> None:
    """Its result written while no prior source answered: `done`, its SR `(priors unavailable)`;
    done with its priors: its SR alone; sent back to be scored again: `receiving`, with the
    reason, as any other. The state column keeps its four values (scripts match them)."""
    studies = {"without": "1.2.826.0.1.3680043.10.543.21", "with": "1.2.826.0.1.3680043.10.543.22",
               "sent back": "1.2.826.0.1.3680043.10.543.23"}
    config = load_config(environ={"RCDS_VAR_DIR": str(tmp_path / "var")})
    (ct_file,) = small_study.write(tmp_path / "ct", small_study.ct_slices()[:1])
    index = StudyIndex(config.index_path)
    try:
        for name, uid in studies.items():
            _index_study(index, uid, ct_file)
            index.finish(uid, DONE, result=f"{uid}.9", priors_unavailable=name != "with")
        index.rescore(studies["sent back"], "scored again: its priors are available now")
    finally:
        index.close()
    shown = _status(config.var_dir, "--show-uids")
    assert shown.returncode == 0, shown.stderr
    rows = {row["study"]: row for row in status_rows(shown.stdout)}
    assert {name: (rows[uid]["state"], rows[uid]["result or reason"]) for name, uid in studies.items()} == {
        "without": ("done", f"SR {studies['without']}.9 (priors unavailable)"),
        "with": ("done", f"SR {studies['with']}.9"),
        "sent back": ("receiving", "scored again: its priors are available now")}


def test_status_says_when_retention_removed_a_studys_spooled_instances(tmp_path: Path) -> None:
    """After the result and its deliveries, the day (UTC) and the setting that removed them; a
    study whose files are in the spool says nothing of it."""
    config = load_config(environ={"RCDS_VAR_DIR": str(tmp_path / "var")})
    (ct_file,) = small_study.write(tmp_path / "ct", small_study.ct_slices()[:1])
    index = StudyIndex(config.index_path)
    try:
        for name in ("pending-pacs", "input-error"):
            _index_study(index, STUDIES[name], ct_file)
            index.finish(STUDIES[name], FAILED, error="no CT series in the study")
        before = time.time()
        assert index.mark_files_removed(STUDIES["pending-pacs"], cutoff=time.time() + 1) is not None
    finally:
        index.close()
    shown = _status(config.var_dir)
    assert shown.returncode == 0, shown.stderr
    rows = {row["study"]: row["result or reason"] for row in status_rows(shown.stdout)}
    days = {time.strftime("%Y-%m-%d", time.gmtime(moment)) for moment in (before, time.time())}
    assert rows[_token(STUDIES["pending-pacs"])] in {
        f"no CT series in the study  instances removed from the spool by retention on {day} UTC (spool_retention_days)"
        for day in days}
    assert rows[_token(STUDIES["input-error"])] == "no CT series in the study"


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "0s"), (59.9, "59s"), (60, "1m"), (3599, "59m"), (3600, "1h 0m"), (2 * 3600 + 5 * 60 + 59, "2h 5m"),
    (86400 + 3 * 3600 + 59 * 60, "1d 3h"), (40 * 86400, "40d 0h"), (-5, "0s"),
])
def test_ages_are_shown_in_their_two_largest_units(seconds: float, shown: str) -> None:
    assert human_age(seconds) == shown


def _token(uid: str) -> str:
    return "uid:" + hashlib.sha256(uid.encode()).hexdigest()[:8]


def test_status_names_studies_and_results_by_the_logs_tokens_unless_asked(tmp_path: Path) -> None:
    """By default no UID is shown: each study's and SR's is the token the log shows for it
    (`uid:` and the first 8 hex digits of its SHA-256, re-computed here), and the study key the
    first column, as before."""
    var_dir = _var_dir(tmp_path)
    index_before = (var_dir / "index.sqlite").read_bytes()
    shown = _status(var_dir)
    assert shown.returncode == 0, shown.stderr
    for uid in (*STUDIES.values(), *RESULTS.values()):
        assert uid not in shown.stdout
    rows = {row["study"]: row for row in status_rows(shown.stdout)}
    assert set(rows) == {_token(uid) for uid in STUDIES.values()}
    pending = rows[_token(STUDIES["pending-pacs"])]
    assert pending["log key"] == hashlib.sha256(STUDIES["pending-pacs"].encode()).hexdigest()[:16]
    assert pending["state"] == "done"
    assert pending["result or reason"].startswith(f"SR {_token(RESULTS['pending-pacs'])}  deliveries: ")
    assert (var_dir / "index.sqlite").read_bytes() == index_before  # read-only


def test_status_of_a_service_with_no_outbox_yet_lists_no_destination(tmp_path: Path) -> None:
    """The outbox database and the index's tables are created by the service, never by status."""
    (tmp_path / "index.sqlite").touch()
    shown = _status(tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split("\n\n")[0] == "log key  study  state  age  result or reason"
    assert shown.stdout.split("\n\n")[1].split() == ["destination", "pending", "delivered", "failed"]
    assert not (tmp_path / "outbox.sqlite").exists()
    assert (tmp_path / "index.sqlite").stat().st_size == 0


def test_redeliver_queues_the_given_up_deliveries_again_and_status_shows_it(tmp_path: Path) -> None:
    """The PACS delivery given up after 2 attempts goes back to pending from attempt 0; with
    --destination fhir (nothing given up there) nothing changes; a var_dir without an outbox is
    refused (exit 3), not created."""
    var_dir = _var_dir(tmp_path)
    environ = {**os.environ, "RCDS_VAR_DIR": str(var_dir)}
    only_fhir = subprocess.run(CLI + ["redeliver", "--destination", "fhir"], env=environ, capture_output=True,
                               text=True, timeout=120)
    assert (only_fhir.returncode, only_fhir.stdout.strip()) == (0, "no delivery was given up to fhir")
    again = subprocess.run(CLI + ["redeliver"], env=environ, capture_output=True, text=True, timeout=120)
    assert (again.returncode, again.stdout.strip()) == (0, "pacs: 1 delivery queued again")
    counts = _status(var_dir).stdout.split("\n\n")[1]
    assert [line.split() for line in counts.splitlines()][2] == ["pacs", "2", "0", "0"]
    empty = subprocess.run(CLI + ["redeliver"], env={**os.environ, "RCDS_VAR_DIR": str(tmp_path / "nothing")},
                           capture_output=True, text=True, timeout=120)
    assert empty.returncode == 3 and "no outbox at" in empty.stderr and not (tmp_path / "nothing").exists()
