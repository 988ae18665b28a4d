"""The rate limiter on a fake clock: GCRA's window bound ``ceil(rate) + burst``, its
long-run rate, rate changes at runtime, parse_rate and NoLimit (concurrent callers and the write gate are
in test_ratelimit_write_gate.py)."""

from __future__ import annotations

import bisect
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ratelimit_helpers import BURSTS, GAPS, RATES, Clock, bound, simulate

from streams.ratelimit import NoLimit, RateLimiter, busiest_window, limiter_for, parse_rate

# -- the window bound ------------------------------------------------------------------------------


@given(rate=RATES, burst=BURSTS, gaps=GAPS, window=st.sampled_from([1.0, 1.03, 1.5]))
def test_no_window_holds_more_than_ceil_rate_plus_burst(
    rate: float, burst: int, gaps: list[float], window: float
) -> None:
    clock = Clock()
    sends = simulate(RateLimiter(rate, burst, clock, window), clock, gaps)
    assert busiest_window(sends, window) <= bound(rate, burst)


@pytest.mark.parametrize(("rate", "burst"), [(4.0, 0), (4.0, 1), (2.5, 0), (2.5, 3), (0.5, 2)])
def test_the_bound_is_reached_when_everyone_comes_at_once(rate: float, burst: int) -> None:
    clock = Clock()
    sends = simulate(RateLimiter(rate, burst, clock), clock, [0.0] * 50)
    assert busiest_window(sends) == bound(rate, burst)


def test_burst_goes_at_once_then_slots_are_one_interval_apart() -> None:
    clock = Clock()
    limiter = RateLimiter(10, burst=2, clock=clock)
    waits = [limiter.reserve() for _ in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3:] == pytest.approx([0.1, 0.2], abs=1e-6)


def test_an_idle_limiter_is_free_again() -> None:
    clock = Clock()
    limiter = RateLimiter(10, burst=1, clock=clock)
    for _ in range(10):
        limiter.reserve()
    clock.now = 1.2
    assert [limiter.reserve(), limiter.reserve()] == [0.0, 0.0]
    assert limiter.reserve() == pytest.approx(0.1, abs=1e-6)


# -- the long-run rate -----------------------------------------------------------------------------


def achieved_rate(sends: list[float], start: float = 1.0, seconds: float = 10.0) -> float:
    ordered = sorted(sends)
    inside = bisect.bisect_left(ordered, start + seconds) - bisect.bisect_left(ordered, start)
    return inside / seconds


@given(rate=st.floats(5.0, 1000.0), burst=BURSTS)
def test_sustained_load_gets_the_rate(rate: float, burst: int) -> None:
    # Everyone at once: past the burst (sent at 0), the queue keeps the limiter busy for 12 s.
    clock = Clock()
    sends = simulate(RateLimiter(rate, burst, clock), clock, [0.0] * (math.ceil(rate * 12) + burst))
    assert achieved_rate(sends) == pytest.approx(rate, rel=0.02)


@settings(max_examples=30)
@given(rate=st.floats(5.0, 100.0), burst=BURSTS, fractions=st.lists(st.floats(0.1, 0.5), min_size=1))
def test_arrivals_faster_than_the_rate_get_the_rate(rate: float, burst: int, fractions: list[float]) -> None:
    # Gaps of 0.1 to 0.5 intervals (cycling through the drawn fractions): the queue grows by half a
    # slot per caller, so the burst is spent by burst/rate seconds; measure the 10 s after that.
    clock = Clock()
    limiter = RateLimiter(rate, burst, clock)
    start = burst / rate + 1.0
    sends: list[float] = []
    while clock.now < start + 10.0:
        sends += simulate(limiter, clock, [fractions[len(sends) % len(fractions)] / rate])
    assert achieved_rate(sends, start) == pytest.approx(rate, rel=0.02)
    assert busiest_window(sends) <= bound(rate, burst)


# -- changing the rate at runtime ------------------------------------------------------------------


def assert_transition_rule(sends: list[float], bounds: list[int]) -> None:
    """Every window holds at most the bound in force when its most recently booked send was booked.

    ``sends[k]``/``bounds[k]`` belong to booking k. A window's sends are a run of the time-ordered
    sends, so checking every run that spans less than a second checks every window.
    """
    order = sorted(range(len(sends)), key=lambda k: sends[k])
    for i in range(len(order)):
        newest = -1
        for j in range(i, len(order)):
            if sends[order[j]] - sends[order[i]] >= 1.0:
                break
            newest = max(newest, order[j])
            assert j - i + 1 <= bounds[newest], (i, j, newest)


SHARES = st.one_of(st.none(), st.sampled_from([1.0, 0.5, 0.25, 1 / 3]), st.floats(0.05, 1.0))


@given(
    rate=RATES,
    burst=BURSTS,
    events=st.lists(st.tuples(st.floats(0.0, 0.6), SHARES, st.integers(1, 30)), max_size=30),
)
def test_rate_changes_follow_the_transition_rule(
    rate: float, burst: int, events: list[tuple[float, float | None, int]]
) -> None:
    clock = Clock()
    limiter = RateLimiter(rate, burst, clock)
    sends: list[float] = []
    bounds: list[int] = []
    for gap, share, callers in events:
        clock.now += gap
        if share is not None:
            limiter.set_share(share)
        for _ in range(callers):
            sends.append(clock.now + limiter.reserve())
            bounds.append(bound(limiter.rate, limiter.burst))
    assert_transition_rule(sends, bounds)


def test_a_lower_rate_counts_the_slots_already_booked() -> None:
    # 21 callers at 100/s with burst 10 book [0, 0.1]. At 10/s the burst tolerance is a whole second,
    # so without looking back at those sends the next caller could go at once, 22 in one window.
    clock = Clock()
    limiter = RateLimiter(100, burst=10, clock=clock)
    simulate(limiter, clock, [0.0] * 21)
    limiter.set_rate(10)
    # Booking 21 must keep s_21 - s_0 >= (21 - 10) / 10 s, or leave the window of s_0: a second later.
    assert limiter.reserve() == pytest.approx(1.0, abs=1e-6)


def test_set_share_halves_the_rate_from_the_moment_of_change() -> None:
    clock = Clock()
    limiter = RateLimiter(100, clock=clock)
    before = simulate(limiter, clock, [0.0] * 100)  # books [0, 0.99]
    limiter.set_share(0.5)
    after = simulate(limiter, clock, [0.0] * 200)
    # The first moment a window [t, t + 1) can take it with the booked sends at 50/s: the 50 booked
    # in [0.5, 1) must be out of its window, not repaid at 50/s (which would mean waiting until 2.0).
    assert after[0] == pytest.approx(1.5, abs=1e-6)
    assert after[1] - after[0] == pytest.approx(0.02, abs=1e-6)
    assert busiest_window(after) == 50
    assert busiest_window(before + after) == 100


def test_a_higher_share_speeds_up_the_queue_at_once() -> None:
    clock = Clock()
    limiter = RateLimiter(100, clock=clock)
    limiter.set_share(0.1)
    simulate(limiter, clock, [0.0] * 10)  # books [0, 0.9] at 10/s
    limiter.set_share(1.0)
    assert limiter.reserve() == pytest.approx(0.91, abs=1e-6)


def test_the_share_scales_the_rate_and_rounds_the_burst_down() -> None:
    limiter = RateLimiter(50, burst=5, clock=Clock())
    limiter.set_share(0.5)
    assert (limiter.rate, limiter.burst, limiter.share) == (25.0, 2, 0.5)
    limiter.set_rate(90)
    assert (limiter.rate, limiter.burst) == (45.0, 2)
    limiter.set_share(1 / 3)
    assert limiter.rate == pytest.approx(30.0)
    assert limiter.burst == 1


@pytest.mark.parametrize("share", [0, -0.5, 1.5, math.nan, True])
def test_shares_outside_zero_to_one_are_refused(share: float) -> None:
    for limiter in (RateLimiter(10, clock=Clock()), NoLimit()):
        with pytest.raises(ValueError, match="share"):
            limiter.set_share(share)


@pytest.mark.parametrize("rate", [0, -1, math.inf, math.nan, True])
def test_rates_must_be_positive_and_finite(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(rate)
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(10).set_rate(rate)


@pytest.mark.parametrize("burst", [-1, 1.5, True])
def test_burst_must_be_a_whole_number(burst: int) -> None:
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(10, burst=burst)


# -- parse_rate, NoLimit ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "per_second"),
    [("50/s", 50.0), ("3000/m", 50.0), ("10/h", 10 / 3600), ("2.5/s", 2.5), (" 7 / m ", 7 / 60)],
)
def test_parse_rate(text: str, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["50", "50/d", "/s", "-5/s", "0/s", "fast", "5/s/s", "1e3/s", 50])
def test_parse_rate_refuses_junk(text: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        parse_rate(text)  # type: ignore[arg-type]


async def test_no_limit_never_waits() -> None:
    limiter = limiter_for(None)
    assert isinstance(limiter, NoLimit)
    assert limiter.rate is None
    assert [limiter.reserve() for _ in range(1000)] == [0.0] * 1000
    assert await limiter.acquire() == 0.0
    limiter.set_rate(5)
    limiter.set_share(0.5)
    assert isinstance(limiter_for(5.0, 2), RateLimiter)
