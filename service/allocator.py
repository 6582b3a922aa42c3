"""glibc's allocator told to keep freed memory for reuse, in the processes that score lesions.

Scoring a lesion allocates and frees numpy arrays of one to a few tens of MB many times over: the
crop in double precision, each interpolation pass, masks, the run-length layouts. Under glibc's
defaults most of them are mapped afresh (mmap above a threshold that adapts) or given back when
freed (the heap's top above 128 KiB free), so they are faulted in again page by page. In process,
the benchmark's 10-lesion study scored its CD8 profile in 233 ms under the defaults and 215 ms
with the settings here; resampling the 100 mL lesion within that sequence took 22 ms against 9.

Here arrays up to 32 MiB come from the heap, and up to 64 MiB of its free top is kept: the
scorer's resident memory stays near its working peak between lesions instead of going back to
the kernel, which its memory limit has to allow for anyway. Larger arrays are still mapped and
unmapped on their own.

glibc keeps the free top per arena, not per thread: a thread that finds the arenas in use gets
one of its own (up to 8 per core), so a scorer whose N worker threads score at once may hold up
to N x 64 MiB more than its live arrays (the chart's scorer: 2 workers, a 6 GiB limit).

Set by the scorer role and the features command, whose work is scoring; not by serve's worker,
ingest or the offline `score` command (the whole pipeline in one process, mostly reading and
writing DICOM): in the latency benchmark, serve's inputs (reading 300 CT files) were not faster
with them. As the scorer's client, serve and ingest build each request in fresh pages (over
gRPC the 100 mL lesion's call took 70 ms with the client under glibc's defaults, 62 ms with
these settings, medians of 9), yet five 10-lesion studies in one serve took as long with them
as without (1.76-1.93 against 1.75-2.20 s: two lesions are scored at a time), and there many
threads allocate (association threads, study workers, each study's scoring pool), each arena
keeping what it freed: so they keep glibc's defaults.
An operator who sets glibc's own variables (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_, or
malloc tunables in GLIBC_TUNABLES) keeps them: nothing is changed then. Other C libraries are
left alone.
"""

from __future__ import annotations

import ctypes
import os
import sys

MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest allowed on 64-bit platforms
TRIM_THRESHOLD_BYTES = 64 << 20

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_OPERATOR_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def _operator_chose(environ: dict[str, str]) -> bool:
    return any(name in environ for name in _OPERATOR_SETTINGS) or "glibc.malloc." in environ.get("GLIBC_TUNABLES", "")


def keep_freed_memory_for_reuse(environ: dict[str, str] | None = None) -> bool:
    """Set the thresholds above in this process; whether they were set (glibc only, and not
    where the operator chose their own)."""
    if not sys.platform.startswith("linux") or _operator_chose(dict(os.environ if environ is None else environ)):
        return False
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: their allocator, their defaults
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
