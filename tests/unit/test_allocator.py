"""The allocator settings of service.allocator, read back from glibc itself (mallinfo2).

What the settings are for is that an array freed by one step is reused by the next instead of
being mapped afresh: after `keep_freed_memory_for_reuse`, an array below the mmap threshold is
served from the heap (glibc's count of mapped bytes does not grow) and, once freed, stays in the
heap as free memory (not trimmed). Under glibc's defaults the same array is mapped (its dynamic
threshold starts at 128 KiB), which the first test shows in a fresh interpreter.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from service.allocator import keep_freed_memory_for_reuse

def _has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL(None), "mallinfo2")
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or not _has_mallinfo2(),
                                reason="glibc's allocator, 2.33 or later (mallinfo2)")

_PROBE = """
import ctypes, sys
import numpy as np
sys.path[:0] = {path!r}
from service.allocator import keep_freed_memory_for_reuse

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
set_here = {configure} and keep_freed_memory_for_reuse()
before = libc.mallinfo2()
array = np.ones(16 << 20, dtype=np.uint8)  # 16 MiB: under the service's threshold, far over glibc's default
during = libc.mallinfo2()
del array
after = libc.mallinfo2()
print(set_here, during.hblkhd - before.hblkhd, after.fordblks - before.fordblks)
"""


def _probe(configure: bool) -> tuple[bool, int, int]:
    """(settings applied, bytes mapped for a 16 MiB array, heap bytes free after it is freed),
    measured in a fresh interpreter (this one's allocator has a history)."""
    code = _PROBE.format(path=sys.path, configure=configure)
    applied, mapped, kept = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                           text=True, env={}).stdout.split()
    return applied == "True", int(mapped), int(kept)


def test_glibc_defaults_map_a_16_mib_array_afresh():
    """The reference: without the settings the array is mapped, and unmapped when freed."""
    applied, mapped, kept = _probe(configure=False)
    assert not applied
    assert mapped >= 16 << 20
    assert kept < 1 << 20


def test_an_array_under_the_threshold_is_served_from_the_heap_and_kept_there():
    applied, mapped, kept = _probe(configure=True)
    assert applied  # glibc accepted both thresholds (mallopt returned 1)
    assert mapped == 0
    assert kept >= 15 << 20  # freed into the heap, less what later small allocations took from it


@pytest.mark.parametrize("environ", [
    {"MALLOC_TRIM_THRESHOLD_": "131072"},
    {"MALLOC_MMAP_THRESHOLD_": "131072"},
    {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"},
])
def test_the_operators_own_settings_are_kept(environ):
    assert keep_freed_memory_for_reuse(environ) is False

