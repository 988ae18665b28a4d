"""Rate limits per integration: how long to wait before the next request.

We do not use aiolimiter: its leaky bucket admits ``capacity + rate`` requests in one second, its
rate is fixed at construction, and each worker of a consumer group must take the share of the limit
that matches its share of partitions, recomputed on every rebalance. (mode's TokenBucket overshoots
when many coroutines check it at once.)

``RateLimiter`` is GCRA (virtual scheduling): a "theoretical arrival time" (TAT) advances by one
emission interval ``T = 1/rate`` per request, and a request may go at ``TAT - burst*T`` at the
earliest. ``reserve()`` books the slot synchronously, before anyone awaits, so concurrent callers
can never be handed the same slot.

The guarantee, for send times s (the moment each caller's wait ends): in any half-open window
``[t, t + 1)`` there are at most ``ceil(rate) + burst`` sends. Proof sketch: GCRA keeps, for any
two bookings j < k, ``s_k - s_j >= (k - j - burst) * T``; if both lie in one window then
``k - j - burst < rate``, so the window holds ``k - j + 1 <= ceil(rate) + burst`` sends. The bound
is tight, and ``ceil`` is unavoidable for fractional rates: any schedule averaging r per second puts
at least ``ceil(r)`` sends in some one-second window. Arithmetic is in integer nanoseconds and slots
are spaced 1 to 2 ns wider than ``1/rate``, so float rounding of the callers' clocks cannot push an
extra send into a window (the cost is a relative slowdown of ``2e-9 * rate``, nil in practice).

Changing the rate (``set_rate``/``set_share``) keeps slots already booked (their callers are
sleeping on them) and books the next ones so that, against every send of the last second, either
the new spacing holds or the new send is more than a second later. Hence the transition rule: every
window holds at most ``ceil(r) + b`` sends, where r and b are the rate and burst in force when the
window's most recently booked send was booked.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

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


class Limiter(Protocol):
    """What the HTTP step needs from a limiter; ``rate`` is None when unlimited."""

    @property
    def rate(self) -> float | None: ...

    def reserve(self) -> float: ...

    async def acquire(self) -> float: ...

    def set_rate(self, rate: float) -> None: ...

    def set_share(self, fraction: float) -> None: ...


class RateLimiter:
    """GCRA limiter: ``rate`` requests per second plus ``burst`` extra at once (see module docstring).

    ``burst`` and the rate are both scaled by the share (the burst rounded down), so that a consumer
    group's workers together stay near ``rate + burst`` rather than each adding a full burst.
    """

    def __init__(self, rate: float, burst: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        _check_rate(rate)
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
            raise ValueError(f"burst must be a whole number >= 0, not {burst!r}")
        self._configured = float(rate)
        self._burst = burst
        self._share = 1.0
        self._clock = clock
        self._tat = _FREE  # ns
        # Send times booked within the last second (or later), in booking order: the sends a new
        # spacing must respect when the rate changes.
        self._recent: deque[int] = deque()
        self._sent: deque[float] = deque()  # actual send times of the last second (clock seconds)
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
        which only ever errs on the slow side.

        GCRA books slots in advance; a caller that wakes up late (a busy event loop) would
        send a slot booked for the previous second in this one. So the actual send times
        are also held to the bound: at most ``floor(rate) + burst`` in any one second."""
        wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
        while True:
            now = self._clock()
            while self._sent and self._sent[0] <= now - 1.0:
                self._sent.popleft()
            if len(self._sent) < self._cap():
                self._sent.append(now)
                return wait
            pause = self._sent[0] + 1.0 - now
            wait += pause
            await asyncio.sleep(pause)

    def _cap(self) -> int:
        return max(1, math.floor(self.rate + 1e-9) + self.burst)

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
        interval = math.floor(_NS / self.rate) + _GUARD_NS
        return interval, self.burst * interval

    def _forget(self, now: int) -> None:
        # Sends more than a second (and the rounding guard) ago share no window with any send still
        # to be booked, which cannot be earlier than now.
        horizon = now - _NS - _GUARD_NS
        while self._recent and self._recent[0] <= horizon:
            self._recent.popleft()

    def _respace(self) -> None:
        # Restart the TAT from the sends of the last second under the new spacing, so that every later
        # booking k, against each recent send j (old or new), either keeps GCRA's
        # s_k - s_j >= (k - j - burst) * T or lands a full second after s_j, outside any window with
        # it. The second alternative is why booked slots are not repaid at the new rate beyond what
        # the windows need.
        self._interval, self._tolerance = self._spacing()
        self._forget(self._now())
        count, apart = len(self._recent), _NS + _GUARD_NS + self._tolerance
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


def limiter_for(rate: float | None, burst: int = 0, clock: Callable[[], float] = time.monotonic) -> Limiter:
    """A ``RateLimiter``, or ``NoLimit`` when the integration sets no rate."""
    return NoLimit() if rate is None else RateLimiter(rate, burst, clock)


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
