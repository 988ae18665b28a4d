"""Figures from raw observations: mean rates, latency percentiles
(hdrhistogram) and a resident-memory sampler reading /proc/PID/status."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

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
    """Samples a process's RSS every ``interval`` seconds while running."""

    pid: int
    interval: float = 0.5
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, kB)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        started = time.monotonic()
        while (value := rss_kb(self.pid)) is not None:
            self.samples.append((time.monotonic() - started, value))
            await asyncio.sleep(self.interval)

    def summary(self, warmup: float) -> dict[str, float | bool]:
        """Peak and final RSS (MiB), the value at ``warmup`` seconds, and whether final is
        within ±10 % of it (flat)."""
        if not self.samples:
            raise ValueError(f"no RSS samples of pid {self.pid}")
        after = [kb for t, kb in self.samples if t >= warmup] or [self.samples[-1][1]]
        warm, final = after[0], self.samples[-1][1]
        peak = max(kb for _, kb in self.samples)
        return {
            "peak_rss_mib": round(peak / 1024, 1),
            "final_rss_mib": round(final / 1024, 1),
            "warm_rss_mib": round(warm / 1024, 1),
            "final_over_warm": round(final / warm, 3),
            "flat": abs(final - warm) <= 0.10 * warm,
        }
