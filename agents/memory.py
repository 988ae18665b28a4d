"""Fixed malloc thresholds, so that the memory of large leads goes back to the system.

glibc serves a block of at least M_MMAP_THRESHOLD bytes (128 KiB at start) with a mapping
of its own and unmaps it when it is freed. But whenever it frees such a block it raises
that threshold to the block's size (up to 32 MiB) and the heap's trim threshold to twice
that (mallopt(3), "dynamic threshold"). One large lead is enough: orjson's working
buffers are many times the document (gdb on the worker, a 0.9 MB lead: 10.8 MB to decode
it, 33 MB to encode its output event), and once such a buffer is freed every block up to
that size comes from a heap, and up to twice that stays free at the heap's top: in the
main heap and in the arena of Faust's consumer thread alike. ``make bench`` P5 at
500 leads/s, 16 leads of 1-2 MB at 72 s: 82.8 MiB before them, 120.4 after and at the
end. A probe in the worker after such a burst (mallinfo2): heaps of 80-89 MiB with
15-16 MiB in use, and malloc_trim(0) took RSS down by 25-33 MiB.

Setting both thresholds turns the adjustment off: large blocks are unmapped when freed,
and the heap's top is given back above ``TRIM_THRESHOLD`` (same P5: 72.8 MiB before,
81.5 after). The cost is a mapping per block of 256 KiB or more (fetch responses,
the outputs' record batches): a few per fetch.

What a burst still leaves is Python's own allocator's: arenas that the decoded leads
filled and that a few live objects keep (+7 MiB of arenas for the same number of live
blocks), a high-water mark that later bursts reuse (three bursts in 10 minutes:
72 -> 79.6 -> 82.0 -> 82.1 MiB). ``trim_if_free_above`` (malloc_trim: free pages between
live blocks, which no threshold returns) cannot touch those arenas (same run with it:
71.5 -> 80.0 -> 80.4 -> 80.5); with PYTHONMALLOC=malloc in the worker's environment the
objects are glibc's too and the trim gives their pages back (P5: 74.1 -> 77.8 MiB), at a
CPU cost not measured cleanly yet.
"""

from __future__ import annotations

import ctypes
import logging
import os
from typing import Protocol

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 * 1024  # blocks at least this large get a mapping of their own
TRIM_THRESHOLD = 1024 * 1024  # free space kept at the top of a heap
TRIM_ABOVE = 4 << 20  # free bytes inside the heaps above which malloc_trim gives pages back


class Mallopt(Protocol):
    def __call__(self, param: int, value: int, /) -> int: ...


def glibc_mallopt() -> Mallopt | None:
    """glibc's ``mallopt``, or None with another C library (musl's and macOS's
    allocators have other rules, and musl's mallopt does nothing)."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        mallopt = ctypes.CDLL(None).mallopt
    except (ValueError, OSError, AttributeError):  # no such confstr name, no symbol
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt  # type: ignore[no-any-return]


def fix_malloc_thresholds(
    mallopt: Mallopt | None = None,
    mmap_threshold: int = MMAP_THRESHOLD,
    trim_threshold: int = TRIM_THRESHOLD,
) -> bool:
    """Fix glibc's mmap and trim thresholds for the whole process (all threads); False
    where that is not possible (not glibc, or a value refused)."""
    mallopt = mallopt or glibc_mallopt()
    if mallopt is None:
        log.debug("not glibc: malloc thresholds left as they are")
        return False
    fixed = bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) & bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))
    if not fixed:
        log.warning("glibc refused the malloc thresholds %d/%d", mmap_threshold, trim_threshold)
    return fixed


class Heap(Protocol):
    """glibc's view of its heaps: free bytes inside them, and giving free pages back."""

    def free_bytes(self) -> int: ...

    def trim(self) -> None: ...


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost",
    )]  # fmt: skip


class GlibcHeap:
    def __init__(self, libc: ctypes.CDLL) -> None:
        self._mallinfo2 = libc.mallinfo2
        self._mallinfo2.restype = _Mallinfo2
        self._malloc_trim = libc.malloc_trim
        self._malloc_trim.argtypes = [ctypes.c_size_t]

    def free_bytes(self) -> int:
        return int(self._mallinfo2().fordblks)

    def trim(self) -> None:
        self._malloc_trim(0)


def glibc_heap() -> Heap | None:
    """The process's glibc heaps (mallinfo2 needs glibc 2.33), or None."""
    if glibc_mallopt() is None:
        return None
    try:
        return GlibcHeap(ctypes.CDLL(None))
    except AttributeError:
        return None


def trim_if_free_above(heap: Heap, limit: int = TRIM_ABOVE) -> bool:
    """Give the heaps' free pages back (malloc_trim) when more than ``limit`` bytes are
    free inside them: the holes between live blocks, which no threshold returns."""
    if heap.free_bytes() <= limit:
        return False
    heap.trim()
    return True
