"""`radiomics-cds <command>` as the tests (and the ingest benchmark) run it: a subprocess on
loopback with its own ports and var directory, settings given as RCDS_* variables, and the
ways tests look at it (log, /metrics, `status`, an association)."""

from __future__ import annotations

import os
import sqlite3
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from pynetdicom import AE, Association
from pynetdicom.sop_class import Verification

from tests.support.external import require_tool
from tests.support.processes import LOOPBACK, free_port, stop_process, wait_until

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "service.cli"]
OUR_AE = "RADIOMICS_CDS"
QUIET_SECONDS = 3
"""The quiet period the end-to-end tests give `serve`: a study is complete 3 s after its last instance."""


def scrape_metrics(http_port: int) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, parsed with prometheus-client's own parser."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{http_port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


# The columns of `status`'s study table, as its header names them (checked, not imported).
STATUS_COLUMNS = ("log key", "study", "state", "age", "result or reason")


def status_rows(output: str) -> list[dict[str, str]]:
    """The study lines of `radiomics-cds status`'s output (under its header, before the blank
    line and the deliveries per destination), each as column -> text, cut where the header
    puts each column: an age (`2h 5m`) or a reason has spaces in it."""
    header, *lines = output.split("\n\n")[0].splitlines()
    starts = [header.index(name) for name in STATUS_COLUMNS]
    assert starts[0] == 0 and starts == sorted(starts), header
    return [{name: line[start:end].strip() for name, start, end in zip(STATUS_COLUMNS, starts, [*starts[1:], None])}
            for line in lines]


def service_env(var_dir: Path, **settings: object) -> dict[str, str]:
    """The environment of a service under test: its var directory, loopback and free ports
    (DICOM, HTTP, scorer, serve's scorer child's HTTP), then `settings` as RCDS_* variables (they win)."""
    return {
        **os.environ, "RCDS_VAR_DIR": str(var_dir), "RCDS_DICOM_PORT": str(free_port()),
        "RCDS_HTTP_PORT": str(free_port()), "RCDS_SCORER_ADDRESS": f"{LOOPBACK}:{free_port()}",
        "RCDS_SCORER_METRICS_PORT": str(free_port()),
        "RCDS_DICOM_HOST": LOOPBACK, "RCDS_HTTP_HOST": LOOPBACK,
        **{f"RCDS_{name.upper()}": str(value) for name, value in settings.items()},
    }


class RunningService:
    """`radiomics-cds [options] <command>` (serve, ingest) until stop(); ready once its DICOM
    listener is up (serve starts the listener only after its scorer child says it is ready).
    `options`: the CLI's own, before the command (--log-level)."""

    def __init__(self, var_dir: Path, command: str = "serve", options: tuple[str, ...] = (), **settings: object) -> None:
        self.var_dir = var_dir
        self.env = service_env(var_dir, **settings)
        self.dicom_port, self.http_port = int(self.env["RCDS_DICOM_PORT"]), int(self.env["RCDS_HTTP_PORT"])
        self.scorer_metrics_port = int(self.env["RCDS_SCORER_METRICS_PORT"])  # serve's scorer child
        var_dir.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = var_dir.parent / f"{command}-{self.dicom_port}.log"
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(CLI + [*options, command], env=self.env, cwd=REPO, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        wait_until(self._listening, 90, f"{command} to start its DICOM listener")

    def _listening(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the service exited: {self.read_log()}")
        return "DICOM listener" in self.read_log()

    def scorer_child(self) -> int:
        """The pid of serve's scorer child process."""
        found = subprocess.run(["pgrep", "-P", str(self.process.pid), "-f", "service.cli scorer"],
                               capture_output=True, text=True).stdout.split()
        assert len(found) == 1, found
        return int(found[0])

    def read_log(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def metrics(self) -> dict[tuple[str, tuple], float]:
        return scrape_metrics(self.http_port)

    def readyz(self) -> tuple[int, str]:
        """/readyz's status and body."""
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{self.http_port}/readyz", timeout=10) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """One sample's value; 0 while the labelled child does not exist yet."""
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

    def rejected(self, reason: str) -> float:
        return self.metric("rcds_associations_rejected_total", reason=reason)

    def _query(self, database: str, sql: str, *parameters: object) -> list[tuple]:
        """Rows of the service's own SQLite files, read-only (fast enough to catch a study being
        scored; `status` starts a process); nothing while the file does not exist yet."""
        path = self.var_dir / database
        if not path.exists():
            return []
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            return db.execute(sql, parameters).fetchall()

    def indexed(self, study_uid: str | None = None) -> set[str]:
        """SOP Instance UIDs in the index (of one study, or all)."""
        if study_uid is None:
            return {row[0] for row in self._query("index.sqlite", "SELECT sop_instance_uid FROM instances")}
        return {row[0] for row in self._query(
            "index.sqlite", "SELECT sop_instance_uid FROM instances WHERE study_instance_uid = ?", study_uid)}

    def study_state(self, study_uid: str) -> str | None:
        rows = self._query("index.sqlite", "SELECT state FROM studies WHERE study_instance_uid = ?", study_uid)
        return rows[0][0] if rows else None

    def result_sr(self, study_uid: str) -> Path | None:
        """The outbox file of the study's current SR (the index's result); None before one."""
        rows = self._query("index.sqlite", "SELECT result FROM studies WHERE study_instance_uid = ?", study_uid)
        return self.var_dir / "outbox" / f"{rows[0][0]}.dcm" if rows and rows[0][0] else None

    def deliveries(self, destination: str) -> list[tuple[str, int, str | None]]:
        """(state, attempts, last error) of each delivery to `destination` (pacs, fhir)."""
        return self._query("outbox.sqlite", "SELECT state, attempts, last_error FROM deliveries WHERE destination = ?",
                           destination)

    def status(self) -> dict[str, tuple[str, str]]:
        """Study Instance UID -> (state, detail), from `radiomics-cds status` (its study lines,
        before the blank line and the deliveries per destination)."""
        out = subprocess.run(CLI + ["status", "--show-uids"], env=self.env, cwd=REPO, capture_output=True, text=True, check=True)
        return {row["study"]: (row["state"], row["result or reason"]) for row in status_rows(out.stdout)}

    def wait_for(self, study_uid: str, states=("done", "failed"), timeout_s: float = 180) -> tuple[str, str]:
        """The study's (state, detail) from `status` once its state is one of `states`.

        The wait reads the index's state column (what `status` prints as the state) every 0.1 s,
        and runs `status` only once that is reached: each `status` is a process importing the
        service (about 3 s of CPU), which, polled, took a core from the service under test."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.study_state(study_uid) in states:
                state = self.status().get(study_uid)
                if state and state[0] in states:
                    return state
            time.sleep(0.1)
        raise AssertionError(f"study not finished: {self.status()} {self.read_log()}")

    def storescu(self, *paths: Path, options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        """dcmtk's storescu (the system's) sends files or folders to us, with extra `options`
        (e.g. which transfer syntaxes to propose)."""
        return subprocess.run([require_tool("storescu"), "-aec", OUR_AE, "+sd", "+r", *options, LOOPBACK,
                               str(self.dicom_port), *map(str, paths)], capture_output=True, text=True, timeout=120)

    def associate(self, calling_ae: str = "Modality_1", tls: ssl.SSLContext | None = None,
                  contexts: tuple[str, ...] = (Verification,)) -> Association:
        ae = AE(ae_title=calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = 10
        for context in contexts:
            ae.add_requested_context(context)
        return ae.associate(LOOPBACK, self.dicom_port, ae_title=OUR_AE,
                            tls_args=(tls, "localhost") if tls is not None else None)

    def stop(self) -> None:
        stop_process(self.process, 90)
        self.log.close()


class Scorer:
    """`radiomics-cds scorer` on loopback with its own gRPC and HTTP ports."""

    def __init__(self, directory: Path, grpc_port: int | None = None, **settings: object) -> None:
        """`grpc_port`: a given port (a scorer back where an ingest expects it), else a free one."""
        self.grpc_port, self.http_port = grpc_port or free_port(), free_port()
        env = {**os.environ, "RCDS_SCORER_ADDRESS": f"{LOOPBACK}:{self.grpc_port}", "RCDS_HTTP_HOST": LOOPBACK,
               "RCDS_HTTP_PORT": str(self.http_port), "RCDS_SCORER_WORKERS": "1",
               **{f"RCDS_{name.upper()}": str(value) for name, value in settings.items()}}
        directory.mkdir(parents=True, exist_ok=True)
        self.log_path = directory / f"scorer-{self.grpc_port}.log"
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(CLI + ["scorer"], env=env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self._ready, 90, "a scorer to answer /readyz")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"scorer exited: {self.log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{self.http_port}/readyz", timeout=2) as answer:
                return answer.status == 200
        except OSError:  # not listening yet, or 503
            return False

    def in_progress(self) -> float:
        return scrape_metrics(self.http_port)[("rcds_scorer_lesions_in_progress", ())]

    def lesions(self) -> float:
        return sum(value for (name, _), value in scrape_metrics(self.http_port).items() if name == "rcds_scorer_lesions_total")

    def stop(self) -> None:
        stop_process(self.process, 40)
        self.log.close()
