"""agents.memory: glibc's malloc thresholds fixed, so that freed large blocks go back;
the heaps' free pages given back above a limit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from agents.memory import (
    M_MMAP_THRESHOLD,
    M_TRIM_THRESHOLD,
    MMAP_THRESHOLD,
    TRIM_ABOVE,
    TRIM_THRESHOLD,
    fix_malloc_thresholds,
    glibc_heap,
    trim_if_free_above,
)


class FakeMallopt:
    def __init__(self, answer: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.answer = answer

    def __call__(self, param: int, value: int, /) -> int:
        self.calls.append((param, value))
        return self.answer


def test_both_thresholds_are_set() -> None:
    mallopt = FakeMallopt()
    assert fix_malloc_thresholds(mallopt)
    assert mallopt.calls == [(M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD)]


def test_a_refused_value_is_reported_and_the_other_still_tried() -> None:
    mallopt = FakeMallopt(answer=0)
    assert not fix_malloc_thresholds(mallopt, mmap_threshold=1 << 30)
    assert [param for param, _ in mallopt.calls] == [M_MMAP_THRESHOLD, M_TRIM_THRESHOLD]


def test_without_glibc_nothing_is_done(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agents.memory.glibc_mallopt", lambda: None)
    assert not fix_malloc_thresholds()


# A large working buffer freed, then blocks of 600 kB of which a few outlive the others:
# what a burst of large leads does. Measured with glibc's mallinfo2 in a fresh
# interpreter, so that nothing else moves the heap: the free bytes the heaps keep.
PROBE = textwrap.dedent(
    """
    import sys
    import orjson
    from agents.memory import fix_malloc_thresholds, glibc_heap

    if sys.argv[1] == "fixed":
        assert fix_malloc_thresholds()
    output = orjson.dumps({"notes": "n" * 1_000_000})  # a working buffer of several MB
    blocks = [bytes(600_000) + bytes([i]) for i in range(40)]
    kept = blocks[::8]
    del output, blocks
    print(glibc_heap().free_bytes())
    """
)


def free_in_heaps(mode: str) -> int:
    """Free bytes glibc's heaps hold at the end of the probe (malloc left to its defaults)."""
    tuning = ("MALLOC_", "GLIBC_TUNABLES", "PYTHONMALLOC")
    env = {name: value for name, value in os.environ.items() if not name.startswith(tuning)}
    command = [sys.executable, "-c", PROBE, mode]
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return int(done.stdout.strip())


@pytest.mark.skipif(glibc_heap() is None, reason="glibc's malloc only")
def test_freed_large_blocks_are_not_kept_in_the_heap() -> None:
    # The default: once a large mapped block is freed, the next ones come from the heap
    # and their space stays there (the cause of P5's growth after large leads).
    assert free_in_heaps("default") > 16 << 20, "glibc no longer keeps freed large blocks: recheck the cause"
    assert free_in_heaps("fixed") < 2 << 20


class FakeHeap:
    def __init__(self, free: int) -> None:
        self.free = free
        self.trims = 0

    def free_bytes(self) -> int:
        return self.free

    def trim(self) -> None:
        self.trims += 1
        self.free = 0


def test_the_heaps_are_trimmed_only_above_the_limit() -> None:
    heap = FakeHeap(free=TRIM_ABOVE)
    assert not trim_if_free_above(heap)
    heap.free = TRIM_ABOVE + 1
    assert trim_if_free_above(heap)
    assert heap.trims == 1 and not trim_if_free_above(heap)


@pytest.mark.skipif(glibc_heap() is None, reason="glibc 2.33+ only")
def test_glibc_heap_reads_and_trims_the_real_heaps() -> None:
    heap = glibc_heap()
    assert heap is not None
    assert heap.free_bytes() >= 0
    heap.trim()  # malloc_trim(0): returns pages, frees nothing in use
