"""A circuit breaker per integration: stop calling a partner that keeps failing.

While a partner is down, every lead would otherwise spend its full timeout and retries on it; an open
breaker fails those calls at once (the step goes to its fallback chain) and lets a few probes through
after a pause to find out when the partner is back.

The decision uses the failure *rate* over a sliding time window with a minimum number of calls, so
a handful of errors at low traffic does not open it, and old failures age out instead of adding up.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar

from streams.config import DURATION, RAISE, Reader, durations, given, same


class State(Enum):
    """Breaker states; the value is what the state gauge shows."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True)
class Trip:
    """Why the breaker last opened: the failures and calls it counted then, and the last
    failure's reason when the caller gave one."""

    failures: int
    calls: int
    probe: bool  # a half-open probe failed (the counts are that one probe)
    reason: str = ""


@dataclass(frozen=True)
class CircuitConfig:
    """``circuit:`` of an integration (the breaker's defaults are these)."""

    failure_rate: float = 0.5
    window: float = 30.0
    min_calls: int = 20
    open_for: float = 15.0
    half_open_probes: int = 1

    CONFIG: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "failure_rate": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "window": DURATION,
            "min_calls": {"type": "integer", "minimum": 1},
            "open_for": DURATION,
            "half_open_probes": {"type": "integer", "minimum": 1},
        },
    }

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], read: Reader = RAISE) -> CircuitConfig:
        zero = {"window": "a circuit's window must be longer than 0"}
        counts = dict.fromkeys(("failure_rate", "min_calls", "half_open_probes"), same)
        return cls(**given(raw, {**counts, **durations(read, "window", "open_for", zero=zero)}))


class CircuitBreaker:
    """Opens when, over the last ``window`` seconds, at least ``min_calls`` calls were recorded and
    ``failures / calls >= failure_rate``. After ``open_for`` seconds it lets ``half_open_probes`` calls
    through: the first probe to succeed closes it (with an empty window), a failed probe reopens it.

    Results recorded while open are ignored: they belong to calls admitted before it opened. A probe
    that never reports (its task was cancelled) must not wedge the breaker, so if ``open_for`` passes
    in half-open without a result, new probes are let through.
    """

    def __init__(
        self,
        failure_rate: float = CircuitConfig.failure_rate,
        window: float = CircuitConfig.window,
        min_calls: int = CircuitConfig.min_calls,
        open_for: float = CircuitConfig.open_for,
        half_open_probes: int = CircuitConfig.half_open_probes,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[State, State], None] | None = None,
    ) -> None:
        if not 0 < failure_rate <= 1:
            raise ValueError(f"failure_rate must be in (0, 1], not {failure_rate!r}")
        if not window > 0 or not open_for >= 0:
            raise ValueError(f"window must be > 0 and open_for >= 0, not {window!r} and {open_for!r}")
        if min_calls < 1 or half_open_probes < 1:
            raise ValueError(
                f"min_calls and half_open_probes must be >= 1, not {min_calls}, {half_open_probes}"
            )
        self.failure_rate = failure_rate
        self.window = window
        self.min_calls = min_calls
        self.open_for = open_for
        self.half_open_probes = half_open_probes
        self.on_change = on_change
        self._clock = clock
        self._state = State.CLOSED
        self._since = clock()  # when the state (or, in half-open, the current round of probes) began
        self._probes = 0  # probes let through in this round
        self._calls: deque[tuple[float, bool]] = deque()  # (time, success) within the window
        self._failures = 0
        self._reason = ""  # the last failure's, as the caller put it
        self.trip: Trip | None = None  # why it last opened (for the log line)

    @property
    def state(self) -> State:
        """The current state; reading it moves open to half-open once ``open_for`` has passed."""
        now = self._clock()
        if self._state is State.OPEN and now - self._since >= self.open_for:
            self._move(State.HALF_OPEN, now)
        elif self._state is State.HALF_OPEN and now - self._since >= self.open_for:
            self._since, self._probes = now, 0  # the probes went silent: start a new round
        return self._state

    def allow(self) -> bool:
        """May a call go out now? In half-open, each True is a probe."""
        state = self.state
        if state is State.CLOSED:
            return True
        if state is State.HALF_OPEN and self._probes < self.half_open_probes:
            self._probes += 1
            return True
        return False

    def record(self, success: bool, reason: str = "") -> None:
        """The result of a call that ``allow()`` let through; ``reason`` says why a failure failed."""
        state = self.state
        now = self._clock()
        if not success and reason:
            self._reason = reason
        if state is State.HALF_OPEN:
            if not success:
                self.trip = Trip(1, 1, probe=True, reason=reason)
            self._move(State.CLOSED if success else State.OPEN, now)
        elif state is State.CLOSED:
            self._calls.append((now, success))
            self._failures += not success
            self._expire(now)
            calls = len(self._calls)
            if calls >= self.min_calls and self._failures / calls >= self.failure_rate:
                self.trip = Trip(self._failures, calls, probe=False, reason=self._reason)
                self._move(State.OPEN, now)

    def _expire(self, now: float) -> None:
        while self._calls and self._calls[0][0] <= now - self.window:
            _, success = self._calls.popleft()
            self._failures -= not success

    def _move(self, to: State, now: float) -> None:
        before, self._state, self._since, self._probes = self._state, to, now, 0
        if to is not State.HALF_OPEN:
            self._calls.clear()  # a fresh start after closing; nothing to count while open
            self._failures = 0
            self._reason = ""
        if self.on_change is not None:
            self.on_change(before, to)
