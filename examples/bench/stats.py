"""Figures from raw observations: mean rates, latency percentiles
(hdrhistogram) and a resident-memory sampler reading /proc/PID/status."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

PERCENTILES = (50.0, 95.0, 99.0)


def mean_rate(times: list[float]) -> float:
    """Events per second between the first and the last event."""
    if len(times) < 2:
        return 0.0
    return (len(times) - 1) / (max(times) - min(times))


def percentiles_ms(values_ms: Iterable[float]) -> dict[str, float]:
    """p50/p95/p99 of millisecond values (recorded in microseconds, 3 significant digits);
    values below 1 µs count as 1 µs."""
    histogram = HdrHistogram(1, 3_600_000_000, 3)
    count = 0
    for value in values_ms:
        histogram.record_value(max(1, round(value * 1000)))
        count += 1
    if not count:
        raise ValueError("no latencies to summarise")
    return {f"p{p:g}": histogram.get_value_at_percentile(p) / 1000 for p in PERCENTILES}


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (all its threads), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class CpuPerLead:
    """CPU a processor spent per output, between the first count above zero and the last:
    start-up and the wait for a group are left out."""

    pid: int
    first: tuple[int, float] | None = None
    last: tuple[int, float] | None = None

    def at(self, count: int) -> None:
        cpu = cpu_seconds(self.pid)
        if count <= 0 or cpu is None:
            return
        if self.first is None:
            self.first = (count, cpu)
        self.last = (count, cpu)

    def micros(self) -> float | None:
        if self.first is None or self.last is None or self.last[0] <= self.first[0]:
            return None
        return (self.last[1] - self.first[1]) / (self.last[0] - self.first[0]) * 1e6


def rss_kb(pid: int) -> int | None:
    """VmRSS of a process in kB, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


@dataclass
class RssSampler:
    """Samples a process's RSS every ``interval`` seconds while running; times are seconds
    since ``start``."""

    pid: int
    interval: float = 0.5
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, kB)
    _task: asyncio.Task[None] | None = None
    _started: float = 0.0

    def start(self) -> None:
        self._started = time.monotonic()
        self._task = asyncio.ensure_future(self._run())

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while (value := rss_kb(self.pid)) is not None:
            self.samples.append((self.elapsed(), value))
            await asyncio.sleep(self.interval)

    def at(self, seconds: float) -> int:
        """The first sample at or after ``seconds`` (else the last one), kB."""
        if not self.samples:
            raise ValueError(f"no RSS samples of pid {self.pid}")
        return next((kb for t, kb in self.samples if t >= seconds), self.samples[-1][1])

    def before(self, seconds: float) -> int:
        """The last sample before ``seconds`` (else the first one), kB."""
        if not self.samples:
            raise ValueError(f"no RSS samples of pid {self.pid}")
        return next((kb for t, kb in reversed(self.samples) if t < seconds), self.samples[0][1])

    def summary(self, warmup: float, large: Sequence[tuple[float, float]] = ()) -> dict[str, Any]:
        """Peak and final RSS (MiB), the value at ``warmup`` seconds, and whether final is
        within ±10 % of it (flat). ``large``: (published, handled) seconds of each burst of
        large inputs; for those, the value just before the first, the highest value
        ``LARGE_SETTLE`` seconds after each was handled (after_large), and the peak during one."""
        if not self.samples:
            raise ValueError(f"no RSS samples of pid {self.pid}")
        warm, final = self.at(warmup), self.samples[-1][1]
        peak = max(kb for _, kb in self.samples)
        figures: dict[str, Any] = {
            "peak_rss_mib": mib(peak),
            "final_rss_mib": mib(final),
            "warm_rss_mib": mib(warm),
            "final_over_warm": round(final / warm, 3),
            "flat": abs(final - warm) <= 0.10 * warm,
            "rss_mib_every_10s": [mib(self.at(t)) for t in range(0, int(self.samples[-1][0]) + 1, 10)],
        }
        if large:
            after = max(self.at(done + LARGE_SETTLE) for _, done in large)
            during = max((kb for t, kb in self.samples if any(sent <= t <= done for sent, done in large)),
                         default=after)  # fmt: skip
            figures |= {
                "before_large_rss_mib": mib(self.before(large[0][0])),
                "large_peak_rss_mib": mib(during),
                "after_large_rss_mib": mib(after),
                "after_large_over_warm": round(after / warm, 3),
                "large_handled_s": [round(done - sent, 1) for sent, done in large],
            }
        return figures


LARGE_SETTLE = 5.0  # seconds after a burst of large inputs was handled: its after-large value


def mib(kb: int) -> float:
    return round(kb / 1024, 1)
