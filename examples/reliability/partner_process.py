"""The partner stand-in in a process of its own, the rate it saw, and CPU hogs.

Why its own process: a real partner runs elsewhere, and the run's driver publishes and
reads thousands of events in its loop. Its arrival stamps come from the kernel
(kernel_stamps.py: when a request's first bytes reached this host), so neither the
driver's loop nor the partner's own wait for a core moves them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from faulty_partner import Faults, faults_to_json

from examples.support.process import free_port
from streams.ratelimit import busiest_window

PARTNER = Path(__file__).resolve().parent / "faulty_partner.py"


@dataclass
class PartnerProcess:
    """``faulty_partner.py`` run as a script; ``stats()`` reads its GET /stats."""

    api_key: str
    faults: Faults
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 30.0) -> str:
        """Start it and wait until it answers; its base URL."""
        with self.log_path.open("ab") as log:
            command = [sys.executable, str(PARTNER), "--port", str(self.port)]
            self.process = subprocess.Popen(
                [*command, "--faults", faults_to_json(self.faults)],
                env={"PARTNER_API_KEY": self.api_key, "PATH": "/usr/bin:/bin"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                await self.stats()
                return self.url
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the partner did not start; see {self.log_path}")
            await asyncio.sleep(0.1)  # polling its port until it listens

    async def stats(self) -> dict[str, object]:
        async with aiohttp.ClientSession() as session, session.get(f"{self.url}/stats") as response:
            response.raise_for_status()
            return await response.json()  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass(frozen=True)
class RateSeen:
    """What the partner saw: the busiest sliding second and the steady rate."""

    max_rps: int  # most arrivals in any [t, t + 1)
    mean_rps: float  # arrivals per second between the 10th and the 90th percentile of them
    over: list[tuple[float, int]]  # (time.time(), count) of the windows above the bound, one per second

    @classmethod
    def of(cls, arrivals: list[float], bound: int) -> RateSeen:
        times = sorted(arrivals)
        return cls(busiest_window(times), steady_rate(times), windows_over(times, bound))


def steady_rate(times: list[float]) -> float:
    """The rate between the 10th and 90th percentile of arrivals: without the ramp-up of the
    first second and the tail of the last leads (of one worker, when the other is done)."""
    if len(times) < 20:
        return 0.0
    low, high = len(times) // 10, len(times) * 9 // 10
    span = times[high] - times[low]
    return (high - low) / span if span > 0 else math.inf


def windows_over(times: list[float], bound: int) -> list[tuple[float, int]]:
    """The windows [t, t + 1) holding more than ``bound`` arrivals, the busiest per second."""
    worst: dict[int, tuple[float, int]] = {}
    end = 0
    for start, moment in enumerate(times):
        while end < len(times) and times[end] < moment + 1.0:
            end += 1
        count = end - start
        if count > bound and count > worst.get(int(moment), (0.0, 0))[1]:
            worst[int(moment)] = (moment, count)
    return sorted(worst.values())


@contextlib.contextmanager
def cpu_hogs(count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` busy processes beside the run (a loaded machine), killed at the end."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()
