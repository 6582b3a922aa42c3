"""Ingest throughput: a 600-slice CT series sent by dcmtk's storescu to `radiomics-cds ingest`,
against dcmtk's own storescp receiving the same series on the same machine in the same run.

Both receivers get the same files from the same sender over loopback and write into a fresh
directory on the same file system, in two modes: the whole series in one association, and the
series split in four parts sent by four storescu processes at once (four concurrent
associations, as a PACS forwarding several series does). What differs is what a receiver does
before it answers Success:

- storescp (its defaults, `-od DIR`): writes the file; no fsync, nothing indexed.

storescu and storescp run with TCP_NODELAY=1 (see DCMTK_ENV): without it Debian's dcmtk waits on
a delayed ACK for every instance and the baseline would be ten times slower than it can be.
- radiomics-cds ingest (as deployed): receives the dataset straight to a file in its receiving
  directory, parses its header, fsyncs it and moves it into the spool by an atomic rename,
  fsyncs the directory, and indexes it in SQLite with synchronous=FULL. That durability is the
  price of the promise that an acknowledged instance is never lost, and it is on here. Each
  run starts on a fresh service once its start-up work is over (it is idle), as a PACS finds it.

For information, a third line times the floor under any receiver that fsyncs: the same files
copied with the spool's own write_atomically, no network and no DICOM.

Runs alternate (storescp, ours, copy, storescp, ours, copy, ..., in each mode) `--repeats` times each after one untimed
warm-up send, so that the source files are in the page cache for every timed run and a burst of
other work on the machine hits both sides alike; the median is reported. Time is storescu's wall
time from start to exit (association, every C-STORE and release; with four, until the last
exits). MB/s counts the bytes of the files sent (10^6 bytes per MB). The last line,
`summary: one-association=N.NNx four-associations=N.NNx`, is our throughput over storescp's
in each mode, so that runs can be compared.

    source .venv/bin/activate
    python bench/bench_ingest.py            # 600 slices, 3 runs each, about 4 minutes
    python bench/bench_ingest.py --quick    # 100 slices, 3 runs each
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydicom.uid import generate_uid

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from service.durable import write_atomically  # noqa: E402
from tests.support.ct_series import slice_pixels, write_ct_series  # noqa: E402
from tests.support.processes import LOOPBACK, free_port, stop_process, system_tool, wait_until  # noqa: E402
from tests.support.service import RunningService  # noqa: E402

OUR_AE, STORESCP_AE = "RADIOMICS_CDS", "STORESCP"
# Debian's dcmtk leaves Nagle's algorithm on unless TCP_NODELAY=1 is in the environment; then
# every C-STORE stalls about 40 ms on a delayed ACK (storescp at ~22 instances/s). The baseline
# must be dcmtk at its best, so the sender and storescp both run with it.
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


@dataclass(frozen=True)
class Run:
    receiver: str
    seconds: float
    instances: int
    megabytes: float

    @property
    def instances_per_second(self) -> float:
        return self.instances / self.seconds

    @property
    def megabytes_per_second(self) -> float:
        return self.megabytes / self.seconds


def _dcmtk(tool: str) -> str:
    found = system_tool(tool)
    if found is None:
        sys.exit(f"{tool} not found: install dcmtk (apt-get install dcmtk)")
    return found


def _send(folders: list[Path], port: int, called_ae: str) -> float:
    """One storescu (one association) per folder, all at once; seconds until the last exits."""
    started = time.monotonic()
    senders = [subprocess.Popen([_dcmtk("storescu"), "-aec", called_ae, "+sd", "+r", LOOPBACK, str(port), str(folder)],
                                env=DCMTK_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for folder in folders]
    outputs = [sender.communicate(timeout=1800)[0] for sender in senders]
    seconds = time.monotonic() - started
    for sender, output in zip(senders, outputs):
        if sender.returncode != 0:
            sys.exit(f"storescu failed ({sender.returncode}): {output}")
    return seconds


def _split(files: list[Path], parts: int, into: Path) -> list[Path]:
    """The series as `parts` folders of hard links, slices dealt round-robin (each association
    sends every fourth slice, as interleaved series from a PACS would arrive)."""
    folders = [into / f"part-{k}" for k in range(parts)]
    for folder in folders:
        folder.mkdir(parents=True)
    for k, source in enumerate(files):
        os.link(source, folders[k % parts] / source.name)
    return folders


@contextmanager
def _storescp(work: Path) -> Iterator[tuple[int, Path]]:
    out = work / "storescp-out"
    out.mkdir()
    port = free_port()
    log = (work / "storescp.log").open("w")
    process = subprocess.Popen([_dcmtk("storescp"), "-aet", STORESCP_AE, "-od", str(out), str(port)],
                               env=DCMTK_ENV, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _accepts(port), 30, "storescp to listen")
        yield port, out
    finally:
        stop_process(process)
        log.close()
        shutil.rmtree(out)


@contextmanager
def _ours(work: Path) -> Iterator[RunningService]:
    """`radiomics-cds ingest` as deployed, on a fresh var directory (no contours are sent, so no
    scorer is needed: nothing is scored), once its start-up work is done (_settled)."""
    var_dir = work / "var"
    service = RunningService(var_dir, "ingest")
    try:
        _settled(service.process.pid)
        yield service
    finally:
        service.stop()
        shutil.rmtree(var_dir)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and every process under it (the worker's page
    renderer warms up in a child of its own): Linux /proc/<pid>/stat, fields 14 and 15, over
    the tree /proc/<pid>/task/*/children gives. A process gone meanwhile counts nothing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                    for child in (task / "children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(_cpu_seconds(child) for child in children)


def _settled(pid: int) -> None:
    """Wait until the fresh service is idle: two quarter-seconds in a row under 10 ms of CPU.
    Its listener is up before its start-up work is done: the worker warms the output builders
    in the background (service/outputs/warm_up.py, about 1 s of CPU here) and starts its page
    renderer (a process of its own, warming up too), which a send started at once would share
    the cores with. A PACS sends to a service that has long been up; storescp has no such work."""
    previous, quiet = _cpu_seconds(pid), 0
    deadline = time.monotonic() + 60
    while quiet < 2 and time.monotonic() < deadline:
        time.sleep(0.25)
        current = _cpu_seconds(pid)
        quiet = quiet + 1 if current - previous < 0.01 else 0
        previous = current
    if quiet < 2:
        print("note: the service was still busy 60 s after its start; this run is timed anyway", file=sys.stderr)


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((LOOPBACK, port)) == 0


def _timed_storescp(folders: list[Path], work: Path, files: int, megabytes: float) -> Run:
    with _storescp(work) as (port, out):
        seconds = _send(folders, port, STORESCP_AE)
        received = sum(1 for _ in out.iterdir())
    if received != files:
        sys.exit(f"storescp wrote {received} of {files} files")
    return Run("storescp", seconds, files, megabytes)


def _timed_ours(folders: list[Path], work: Path, files: int, megabytes: float) -> Run:
    with _ours(work) as service:
        seconds = _send(folders, service.dicom_port, OUR_AE)
        indexed = len(service.indexed())
    if indexed != files:
        sys.exit(f"radiomics-cds indexed {indexed} of {files} instances")
    return Run("radiomics-cds", seconds, files, megabytes)


def _timed_durable_copy(files: list[Path], work: Path, megabytes: float) -> Run:
    """The floor under any receiver that fsyncs each instance: the same files copied with the
    spool's own write_atomically (temp file, fsync, rename, directory fsync), no DICOM at all."""
    target = work / "durable-copy"
    started = time.monotonic()
    for source in files:
        write_atomically(target / source.name, lambda stream, source=source: stream.write(source.read_bytes()))
    seconds = time.monotonic() - started
    shutil.rmtree(target)
    return Run("durable copy", seconds, len(files), megabytes)


def _median(runs: list[Run]) -> Run:
    return Run(runs[0].receiver, statistics.median(r.seconds for r in runs), runs[0].instances, runs[0].megabytes)


def _table(runs: dict[str, list[Run]]) -> float:
    """Print one mode's table; returns our throughput over storescp's (medians)."""
    baseline, ours, floor = (_median(runs[key]) for key in ("storescp", "radiomics-cds", "durable copy"))
    print("| receiver | median s | instances/s | MB/s | runs (s) | throughput vs storescp |")
    print("|---|---:|---:|---:|---|---:|")
    for label, median, key in (("dcmtk storescp (no fsync)", baseline, "storescp"),
                               ("radiomics-cds ingest (fsync + index)", ours, "radiomics-cds"),
                               ("for information: fsync'd file copy, no DICOM", floor, "durable copy")):
        each = ", ".join(f"{r.seconds:.2f}" for r in runs[key])
        print(f"| {label} | {median.seconds:.2f} | {median.instances_per_second:.0f} | "
              f"{median.megabytes_per_second:.0f} | {each} | {baseline.seconds / median.seconds:.2f} |")
    print()
    return baseline.seconds / ours.seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 slices, 3 runs each")
    parser.add_argument("--slices", type=int, help="slices in the series (default 600)")
    parser.add_argument("--repeats", type=int, help="timed runs per receiver and mode (default 3)")
    args = parser.parse_args()
    slices = args.slices or (100 if args.quick else 600)
    repeats = args.repeats or 3

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        folder = work / "series"
        started = time.monotonic()
        write_ct_series(folder, generate_uid(), [slice_pixels(k) for k in range(slices)])
        files = sorted(folder.iterdir())
        megabytes = sum(f.stat().st_size for f in files) / 1e6
        modes = {"one association": [folder], "four concurrent associations": _split(files, 4, work / "parts")}
        print(f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
              f"{subprocess.run([_dcmtk('storescp'), '--version'], capture_output=True, text=True).stdout.splitlines()[0].strip()}; "
              f"1-minute load average {os.getloadavg()[0]:.2f} at start.")
        print(f"Series: {len(files)} CT instances, 512x512 16-bit, {megabytes:.1f} MB of files "
              f"(written in {time.monotonic() - started:.1f} s); sent by storescu over loopback.")

        _timed_storescp([folder], work, len(files), megabytes)  # warm-up: source files into the page cache
        runs: dict[str, dict[str, list[Run]]] = {
            mode: {"storescp": [], "radiomics-cds": [], "durable copy": []} for mode in modes}
        for _ in range(repeats):
            for mode, folders in modes.items():
                runs[mode]["storescp"].append(_timed_storescp(folders, work, len(files), megabytes))
                runs[mode]["radiomics-cds"].append(_timed_ours(folders, work, len(files), megabytes))
                runs[mode]["durable copy"].append(_timed_durable_copy(files, work, megabytes))

    ratios = []
    for mode in modes:
        print(f"\n{mode[0].upper()}{mode[1:]}:\n")
        ratios.append(_table(runs[mode]))
    print(f"1-minute load average {os.getloadavg()[0]:.2f} at end.")
    print(f"summary: one-association={ratios[0]:.2f}x four-associations={ratios[1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
