"""glibc's allocator told to keep freed memory for reuse, in every process of the service.

A study's work is numpy arrays of one to a few tens of MB, allocated and freed many times over:
a lesion's crop, its resampled image, masks, run-length layouts, one CT slice after another.
glibc's defaults serve such an array from fresh pages (mmap above a threshold that adapts, and
the heap's top returned to the kernel above 128 KiB free), so nearly every array is faulted in
again, page by page. On the machines measured that is the larger part of resampling a lesion
(bench/README.md: 31 ms for the 100 mL lesion, 11 ms once arrays reuse memory) and a fifth of the
CD8 profile's time.

Here arrays up to 32 MiB come from the heap, and up to 64 MiB of its free top is kept: a
process's resident memory stays near its working peak instead of returning to the kernel between
lesions, which a pod's memory limit has to allow for anyway. Larger arrays (a whole CT volume for
registration) are still mapped and unmapped on their own.

An operator who sets glibc's own variables (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_, or
malloc tunables in GLIBC_TUNABLES) keeps them: nothing is changed then. Other C libraries are left
alone.
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
