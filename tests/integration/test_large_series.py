"""Large inputs go straight to disk: `radiomics-cds serve` receives a synthetic 600-slice CT
series (512 x 512, 16-bit: 315 MB of pixel data) from dcmtk's storescu, and then the same
600 slices as one 315 MB Enhanced CT instance, while we watch the peak resident memory (VmHWM
in /proc/<pid>/status) of the process that runs the listener (serve's parent; its scorer child
is another process and does not receive anything).

The bound: the peak may grow by less than a quarter of the bytes sent. Received datasets are
written to a file as their fragments arrive (pynetdicom's STORE_RECV_CHUNKED_DATASET), only
headers are parsed, and spooling copies file to file in 1 MB blocks; what remains is buffers,
the SQLite page cache and the allocator's slack, a few tens of MB at most whatever the size
sent. Receiving in memory would cost at least the size of the largest instance: a single 315 MB
instance would break the bound by itself, and a series that accumulated anywhere would too.

No contours are sent, so nothing is scored: the study waits for its RTSTRUCT or SEG.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from service.ingest.spool import Spool
from tests.support.external import require_tool
from tests.support.ct_series import SLICE_BYTES, slice_pixels, write_ct_series, write_enhanced_ct
from tests.support.service import RunningService

pytestmark = [pytest.mark.external, pytest.mark.timeout(600)]

SLICES = 600
SERIES_BYTES = SLICES * SLICE_BYTES  # 314,572,800 bytes of pixel data
MEMORY_BOUND = SERIES_BYTES // 4


def _peak_rss_bytes(pid: int) -> int:
    """VmHWM: the process's peak resident set size so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


@dataclass(frozen=True)
class Series:
    folder: Path  # 600 CT Image Storage files
    enhanced: Path  # the same slices as one Enhanced CT Image Storage instance
    study_uid: str
    sop_uids: tuple[str, ...]
    enhanced_uid: str


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> Series:
    """Written once for every test of this module (about 630 MB under the pytest tmp dir)."""
    root = tmp_path_factory.mktemp("large")
    study_uid = generate_uid()
    pixels = [slice_pixels(k) for k in range(SLICES)]
    sop_uids = write_ct_series(root / "series", study_uid, pixels)
    enhanced_uid = write_enhanced_ct(root / "enhanced.dcm", study_uid, pixels)
    return Series(root / "series", root / "enhanced.dcm", study_uid, sop_uids, enhanced_uid)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    require_tool("storescu")
    running = RunningService(tmp_path_factory.mktemp("large-serve") / "var")
    yield running
    running.stop()


@dataclass(frozen=True)
class Sent:
    peak_before: int
    peak_after: int
    seconds: float

    @property
    def growth(self) -> int:
        return self.peak_after - self.peak_before


def _send(service: RunningService, *paths: Path) -> Sent:
    before = _peak_rss_bytes(service.process.pid)
    started = time.monotonic()
    sent = subprocess.run([require_tool("storescu"), "-aec", "RADIOMICS_CDS", "+sd", "+r", "127.0.0.1",
                           str(service.dicom_port), *map(str, paths)], capture_output=True, text=True, timeout=500)
    seconds = time.monotonic() - started
    assert sent.returncode == 0, sent.stdout + sent.stderr + service.read_log()
    return Sent(before, _peak_rss_bytes(service.process.pid), seconds)


@pytest.fixture(scope="module")
def sent_series(service, series) -> Sent:
    return _send(service, series.folder)


def test_receiving_a_600_slice_series_keeps_peak_memory_bounded(sent_series, series):
    print(f"\n600 x {SLICE_BYTES} B sent in {sent_series.seconds:.1f} s; listener peak RSS "
          f"{sent_series.peak_before / 2**20:.0f} MiB -> {sent_series.peak_after / 2**20:.0f} MiB "
          f"(+{sent_series.growth / 2**20:.1f} MiB; bound {MEMORY_BOUND / 2**20:.0f} MiB)")
    assert sent_series.growth < MEMORY_BOUND


def test_every_instance_of_the_series_is_spooled_and_indexed(service, sent_series, series):
    assert service.indexed(series.study_uid) >= set(series.sop_uids)
    spool = Spool(service.var_dir / "spool")
    assert all(spool.path_for(series.study_uid, uid).is_file() for uid in series.sop_uids)
    for k in (0, SLICES // 2, SLICES - 1):  # and what was spooled is what was sent
        original = pydicom.dcmread(series.folder / f"CT{k + 1:04d}.dcm")
        stored = pydicom.dcmread(spool.path_for(series.study_uid, series.sop_uids[k]))
        assert stored.PixelData == original.PixelData
        assert stored.ImagePositionPatient == original.ImagePositionPatient
    assert service.status()[series.study_uid][0] == "receiving"  # waiting for contours: nothing scored


def test_a_single_315_mb_instance_goes_straight_to_disk(service, sent_series, series):
    sent = _send(service, series.enhanced)
    print(f"\none {series.enhanced.stat().st_size} B Enhanced CT instance sent in {sent.seconds:.1f} s; "
          f"listener peak RSS +{sent.growth / 2**20:.1f} MiB (bound {MEMORY_BOUND / 2**20:.0f} MiB)")
    assert sent.growth < MEMORY_BOUND
    assert series.enhanced_uid in service.indexed(series.study_uid)
    stored = Spool(service.var_dir / "spool").path_for(series.study_uid, series.enhanced_uid)
    assert stored.stat().st_size >= SERIES_BYTES
    header = pydicom.dcmread(stored, stop_before_pixels=True)
    assert int(header.NumberOfFrames) == SLICES
