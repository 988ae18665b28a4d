"""The circuit breaker, on a fake clock: failure rate over a sliding window, open, probes, close."""

from __future__ import annotations

import pytest

from streams.circuit import CircuitBreaker, State, Trip


class Breaker:
    """A breaker on a hand-moved clock that remembers its transitions."""

    def __init__(self, **options: float) -> None:
        self.now = 0.0
        self.changes: list[tuple[State, State]] = []
        self.breaker = CircuitBreaker(
            clock=lambda: self.now, on_change=lambda a, b: self.changes.append((a, b)), **options
        )

    def calls(self, failures: int, successes: int = 0, every: float = 0.0) -> None:
        for success in [False] * failures + [True] * successes:
            assert self.breaker.allow()
            self.breaker.record(success)
            self.now += every


def test_state_values_feed_a_gauge() -> None:
    assert [s.value for s in (State.CLOSED, State.HALF_OPEN, State.OPEN)] == [0, 1, 2]


def test_opens_at_the_failure_rate_once_there_are_enough_calls() -> None:
    b = Breaker(failure_rate=0.5, min_calls=20)
    b.calls(failures=9, successes=10)
    assert b.breaker.state is State.CLOSED  # 19 calls: too few to judge
    b.calls(failures=1)
    assert b.breaker.state is State.OPEN  # 10 of 20
    assert b.changes == [(State.CLOSED, State.OPEN)]
    assert not b.breaker.allow()


def test_stays_closed_below_the_failure_rate() -> None:
    b = Breaker(failure_rate=0.5, min_calls=20)
    b.calls(failures=9, successes=11)
    b.calls(failures=1, successes=1)
    assert b.breaker.state is State.CLOSED  # 10 of 22
    assert b.changes == []


def test_old_failures_leave_the_window() -> None:
    b = Breaker(failure_rate=0.5, window=30.0, min_calls=20)
    b.calls(failures=15)  # at t=0
    b.now = 31.0
    b.calls(failures=5, successes=10)  # the 15 old ones have aged out: 5 of 15 calls
    assert b.breaker.state is State.CLOSED
    b.now = 29.0 + 31.0
    b.calls(failures=5)  # 10 of 20 within (30, 60]
    assert b.breaker.state is State.OPEN


def test_failures_at_the_window_edge_still_count() -> None:
    b = Breaker(failure_rate=0.5, window=30.0, min_calls=4)
    b.calls(failures=2)
    b.now = 29.999
    b.calls(failures=0, successes=2)
    assert b.breaker.state is State.OPEN


def test_after_open_for_one_probe_goes_through() -> None:
    b = Breaker(min_calls=1, open_for=15.0)
    b.calls(failures=1)
    b.now = 14.9
    assert not b.breaker.allow()
    b.now = 15.0
    assert b.breaker.allow()
    assert b.breaker.state is State.HALF_OPEN
    assert [b.breaker.allow() for _ in range(5)] == [False] * 5  # concurrent callers wait for the probe


def test_concurrent_probes_are_limited_to_half_open_probes() -> None:
    b = Breaker(min_calls=1, open_for=1.0, half_open_probes=3)
    b.calls(failures=1)
    b.now = 1.0
    assert [b.breaker.allow() for _ in range(6)] == [True] * 3 + [False] * 3


def test_a_successful_probe_closes_with_an_empty_window() -> None:
    b = Breaker(failure_rate=0.5, min_calls=2, open_for=1.0)
    b.calls(failures=2)
    b.now = 1.0
    assert b.breaker.allow()
    b.breaker.record(True)
    assert b.breaker.state is State.CLOSED
    b.calls(failures=1)  # the two failures before opening are forgotten: 1 call is below min_calls
    assert b.breaker.state is State.CLOSED
    assert b.changes == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]


def test_a_failed_probe_reopens_for_another_open_for() -> None:
    b = Breaker(min_calls=1, open_for=10.0)
    b.calls(failures=1)
    b.now = 10.0
    assert b.breaker.allow()
    b.now = 12.0
    b.breaker.record(False)
    assert b.breaker.state is State.OPEN
    b.now = 21.9
    assert not b.breaker.allow()
    b.now = 22.0
    assert b.breaker.allow()
    assert b.changes[-2:] == [(State.HALF_OPEN, State.OPEN), (State.OPEN, State.HALF_OPEN)]


def test_results_of_calls_admitted_before_opening_are_ignored() -> None:
    b = Breaker(min_calls=1, open_for=10.0)
    b.calls(failures=1)
    b.breaker.record(True)  # a slow call that started while closed
    assert b.breaker.state is State.OPEN


def test_a_silent_probe_does_not_wedge_the_breaker() -> None:
    b = Breaker(min_calls=1, open_for=5.0)
    b.calls(failures=1)
    b.now = 5.0
    assert b.breaker.allow()  # this probe's task is cancelled and never records
    b.now = 9.9
    assert not b.breaker.allow()
    b.now = 10.0
    assert b.breaker.allow()
    assert b.breaker.state is State.HALF_OPEN


def test_the_trip_says_how_many_failed_and_the_last_reason() -> None:
    b = Breaker(failure_rate=0.5, min_calls=4, open_for=1.0)
    b.breaker.record(False, "HTTP 502")
    b.breaker.record(True)
    b.breaker.record(False, "timeout after 1s")
    assert b.breaker.trip is None
    b.breaker.record(False)  # no reason given: the last one given stands
    assert b.breaker.trip == Trip(failures=3, calls=4, probe=False, reason="timeout after 1s")
    b.now += 1.0
    assert b.breaker.allow()
    b.breaker.record(False, "HTTP 503")
    assert b.breaker.trip == Trip(failures=1, calls=1, probe=True, reason="HTTP 503")


@pytest.mark.parametrize(
    "options",
    [
        {"failure_rate": 0},
        {"failure_rate": 1.5},
        {"window": 0},
        {"open_for": -1},
        {"min_calls": 0},
        {"half_open_probes": 0},
    ],
)
def test_bad_settings_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(**options)  # type: ignore[arg-type]
