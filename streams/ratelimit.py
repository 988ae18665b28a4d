"""Rate limits per integration: how long to wait before the next request, and before its write.

We do not use aiolimiter: its leaky bucket admits ``capacity + rate`` requests in one second, its
rate is fixed at construction, and each worker of a consumer group must take the share of the limit
that matches its share of partitions, recomputed on every rebalance. (mode's TokenBucket overshoots
when many coroutines check it at once.)

Two stages, because the partner counts requests when they arrive, not when we decide to send them:

1. ``acquire()`` paces the decisions. ``RateLimiter`` is GCRA (virtual scheduling): a "theoretical
   arrival time" (TAT) advances by one emission interval ``T = window/rate`` per request, and a
   request may go at ``TAT - burst*T`` at the earliest. ``reserve()`` books the slot synchronously,
   before anyone awaits, so concurrent callers can never be handed the same slot.
2. ``wait_to_write()`` holds the write itself to the bound: the transport calls it at the last
   moment before the request's bytes go to the socket, with nothing awaited in between
   (streams.http_client), and it keeps a log of those write times. Between acquire's return and the
   write, a busy event loop or a descheduled process delays each request by a different amount
   (its connection, its task's turn); measured on a loaded 2-core machine that turned 294 paced
   decisions per second into 364 writes in one second. The log is the last word: a write that
   would make ``cap`` writes in ``window`` seconds waits until the oldest of them leaves it.

The guarantee, with ``window`` W (1 s by default; streams.protections adds the partner's arrival
jitter), for the booked send times and for the write times each: in any half-open window
``[t, t + W)`` there are at most ``ceil(rate) + burst`` of them. Proof sketch for GCRA: it keeps,
for any two bookings j < k, ``s_k - s_j >= (k - j - burst) * T``; if both lie in one window then
``k - j - burst < rate``, so the window holds ``k - j + 1 <= ceil(rate) + burst`` sends. For the
writes it is the log's rule. A one-second window at the partner then holds at most that many
requests as long as their delivery times differ by less than ``W - 1``. GCRA's bound is tight, and
``ceil`` is unavoidable for fractional rates: any schedule averaging r per second puts at least
``ceil(r)`` sends in some one-second window. GCRA paces at ``rate / W``, so on a quiet machine the
write log finds every write within its cap and never delays one. Arithmetic is in integer
nanoseconds and slots are spaced 1 to 2 ns wider than ``W/rate``, so float rounding of the
callers' clocks cannot push an extra send into a window.

A worker's share of a group's limit: rate and burst scale by the share (the burst rounded down);
the write cap of a share below one is rounded down too (``floor(rate*share) + floor(burst*share)``,
at least 1), so that the workers' caps add up to at most the group's ``ceil(rate) + burst``.

Changing the rate (``set_rate``/``set_share``) keeps slots already booked (their callers are
sleeping on them) and books the next ones so that, against every send of the last window, either
the new spacing holds or the new send is more than a window later. Hence the transition rule: every
window holds at most ``ceil(r) + b`` sends, where r and b are the rate and burst in force when the
window's most recently booked send was booked. The write log simply applies the new cap to the
writes already in it: a lower share waits until its recent writes fit.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from streams.config import RAISE, Reader

_NS = 1_000_000_000
_GUARD_NS = 2  # extra spacing per slot that absorbs float rounding (see the module docstring)
_FREE = -(2**63)  # a TAT long past: the next request may go at once
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h)\s*$")


def parse_rate(value: str) -> float:
    """Requests per second for a flow file's ``50/s``, ``3000/m``, ``10/h`` or ``2.5/s``."""
    match = _RATE.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"not a rate: {value!r} (use e.g. 50/s, 3000/m, 10/h)")
    rate = float(match.group(1)) / _UNITS[match.group(2)]
    if rate <= 0:
        raise ValueError(f"a rate must be above zero: {value!r}")
    return rate


@dataclass(frozen=True)
class RateLimitConfig:
    """An integration's ``rate_limit:`` (requests per second, None: no limit) and ``burst:``."""

    rate_limit: float | None = None
    burst: int = 0

    CONFIG: ClassVar[dict[str, Any]] = {
        "properties": {
            "rate_limit": {
                "type": "string",
                "pattern": "^\\s*\\d+(\\.\\d+)?\\s*/\\s*(s|m|h)\\s*$",
                "description": "e.g. 50/s, 3000/m: for the whole consumer group",
                "x-problem": "rates look like 50/s, 3000/m, 100000/h",
            },
            "burst": {"type": "integer", "minimum": 0},
        }
    }

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], read: Reader = RAISE) -> RateLimitConfig:
        """From the integration's mapping (the two keys sit beside its others)."""
        rate = None
        if raw.get("rate_limit") is not None:
            try:
                rate = parse_rate(raw["rate_limit"])
            except ValueError as exc:
                read.problem(("rate_limit",), str(exc))
        return cls(rate, raw["burst"]) if "burst" in raw else cls(rate)


class WriteGate(Protocol):
    """What a transport calls at the moment of a request's write (see the module docstring)."""

    async def wait_to_write(self) -> float: ...

    def record_write(self) -> None: ...


# The gate of the slot the current task acquired last, for the transport to pace that slot's
# write with. ``acquire()`` sets it and the transport takes it (streams.http_client): the step
# code between them (streams.step.partner) needs no part in it, and a task sends one request at a time.
_armed: ContextVar[WriteGate | None] = ContextVar("leadstreams_write_gate", default=None)


def take_write_gate() -> WriteGate | None:
    """The gate ``acquire()`` armed in this task, if any; disarmed, so it paces one write only."""
    gate = _armed.get()
    if gate is not None:
        _armed.set(None)
    return gate


class Limiter(Protocol):
    """What the HTTP step needs from a limiter; ``rate`` is None when unlimited."""

    @property
    def rate(self) -> float | None: ...

    def reserve(self) -> float: ...

    async def acquire(self) -> float: ...

    def set_rate(self, rate: float) -> None: ...

    def set_share(self, fraction: float) -> None: ...


class RateLimiter:
    """GCRA limiter plus a log of write times: ``rate`` requests per ``window`` seconds plus
    ``burst`` extra at once (see module docstring).

    ``burst`` and the rate are both scaled by the share (the burst rounded down), so that a consumer
    group's workers together stay near ``rate + burst`` rather than each adding a full burst.
    """

    def __init__(
        self, rate: float, burst: int = 0, clock: Callable[[], float] = time.monotonic, window: float = 1.0
    ) -> None:
        _check_rate(rate)
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
            raise ValueError(f"burst must be a whole number >= 0, not {burst!r}")
        if not 1.0 <= window < 2.0:
            raise ValueError(f"window must be in [1, 2) seconds, not {window!r}")
        self._configured = float(rate)
        self._burst = burst
        self._share = 1.0
        self._clock = clock
        self._window = round(window * _NS)
        self._tat = _FREE  # ns
        # Send times booked within the last window (or later), in booking order: the sends a new
        # spacing must respect when the rate changes.
        self._recent: deque[int] = deque()
        self._written: deque[int] = deque()  # write times (ns) of the last window, in order
        self._queue = asyncio.Lock()  # writes that must wait go in arrival order
        self._interval, self._tolerance = self._spacing()

    @property
    def rate(self) -> float:
        """The effective rate: the configured rate times this worker's share."""
        return self._configured * self._share

    @property
    def burst(self) -> int:
        """The effective burst: the configured burst times the share, rounded down."""
        return int(self._burst * self._share + 1e-9)

    @property
    def share(self) -> float:
        return self._share

    @property
    def window(self) -> float:
        return self._window / _NS

    @property
    def cap(self) -> int:
        """Most writes in any ``window``: ``ceil(rate) + burst``, rounded down for a share."""
        if self._share >= 1.0:
            return math.ceil(self.rate - 1e-9) + self.burst
        return max(1, math.floor(self.rate + 1e-9) + self.burst)

    def reserve(self) -> float:
        """Book the next slot now and return the seconds to wait for it (0.0 when free)."""
        now = self._now()
        send = max(now, self._tat - self._tolerance)
        self._tat = max(self._tat, now) + self._interval
        self._recent.append(send)
        self._forget(now)
        return (send - now) / _NS

    async def acquire(self) -> float:
        """Wait for a slot; returns the wait (for a metric). A cancelled wait leaves its slot unused,
        which only ever errs on the slow side. Arms this limiter's write gate for the transport."""
        wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
        _armed.set(self)
        return wait

    def write_wait(self) -> float:
        """0.0 with the write recorded now, or the seconds until one fits in the cap."""
        now = self._now()
        horizon = now - self._window - _GUARD_NS  # (the guard: as GCRA's, against float rounding)
        while self._written and self._written[0] <= horizon:
            self._written.popleft()
        cap = self.cap
        if len(self._written) < cap:
            self._written.append(now)
            return 0.0
        return (self._written[-cap] - horizon) / _NS  # until the cap-th latest leaves the window

    async def wait_to_write(self) -> float:
        """Until this write fits in the cap, then record it; the seconds waited. The caller writes
        right after, with nothing awaited in between. A cancelled wait records nothing."""
        if not self._queue.locked() and self.write_wait() == 0.0:
            return 0.0
        waited = 0.0
        async with self._queue:
            while (wait := self.write_wait()) > 0:
                waited += wait
                await asyncio.sleep(wait)
        return waited

    def record_write(self) -> None:
        """A write that happened without asking (the transport found no moment to gate it): it
        counts against the next ones."""
        self._written.append(max(self._now(), self._written[-1] if self._written else _FREE))

    def set_rate(self, rate: float) -> None:
        """Change the configured (group-wide) rate, e.g. after a flow reload."""
        _check_rate(rate)
        self._configured = float(rate)
        self._respace()

    def set_share(self, fraction: float) -> None:
        """Take ``fraction`` of the configured rate: this worker's share of the partitions."""
        _check_share(fraction)
        self._share = float(fraction)
        self._respace()

    def _now(self) -> int:
        return round(self._clock() * _NS)

    def _spacing(self) -> tuple[int, int]:
        interval = math.floor(self._window / self.rate) + _GUARD_NS
        return interval, self.burst * interval

    def _forget(self, now: int) -> None:
        # Sends more than a window (and the rounding guard) ago share no window with any send still
        # to be booked, which cannot be earlier than now.
        horizon = now - self._window - _GUARD_NS
        while self._recent and self._recent[0] <= horizon:
            self._recent.popleft()

    def _respace(self) -> None:
        # Restart the TAT from the sends of the last window under the new spacing, so that every later
        # booking k, against each recent send j (old or new), either keeps GCRA's
        # s_k - s_j >= (k - j - burst) * T or lands a full window after s_j, outside any window with
        # it. The second alternative is why booked slots are not repaid at the new rate beyond what
        # the windows need.
        self._interval, self._tolerance = self._spacing()
        self._forget(self._now())
        count, apart = len(self._recent), self._window + _GUARD_NS + self._tolerance
        self._tat = max(
            (send + min(apart, (count - index) * self._interval) for index, send in enumerate(self._recent)),
            default=_FREE,
        )


class NoLimit:
    """The limiter of an integration without a rate limit: never waits."""

    @property
    def rate(self) -> None:
        return None

    def reserve(self) -> float:
        return 0.0

    async def acquire(self) -> float:
        return 0.0

    def set_rate(self, rate: float) -> None:
        _check_rate(rate)

    def set_share(self, fraction: float) -> None:
        _check_share(fraction)


def limiter_for(
    rate: float | None, burst: int = 0, clock: Callable[[], float] = time.monotonic, window: float = 1.0
) -> Limiter:
    """A ``RateLimiter``, or ``NoLimit`` when the integration sets no rate."""
    return NoLimit() if rate is None else RateLimiter(rate, burst, clock, window)


def _check_rate(rate: float) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate < math.inf:
        raise ValueError(f"a rate must be a number of requests per second above zero, not {rate!r}")


def _check_share(fraction: float) -> None:
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction <= 1:
        raise ValueError(f"a share must be in (0, 1], not {fraction!r}")


def busiest_window(times: list[float], width: float = 1.0) -> int:
    """The most events in any half-open window ``[t, t + width)``: the measure the bound
    above is stated in (tests and ``make bench`` hold send or arrival times to it)."""
    ordered = sorted(times)
    most, start = 0, 0
    for end, moment in enumerate(ordered):
        while ordered[start] <= moment - width:
            start += 1
        most = max(most, end - start + 1)
    return most
