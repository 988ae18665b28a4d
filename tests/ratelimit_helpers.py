"""A hand-moved clock, the GCRA window bound and a simulated stream of
callers, with the Hypothesis strategies for rates, bursts and gaps, for the test_ratelimit*.py modules."""

from __future__ import annotations

import math

from hypothesis import strategies as st

from streams.ratelimit import RateLimiter


class Clock:
    """A fake monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def bound(rate: float, burst: int) -> int:
    return math.ceil(rate) + burst


def simulate(limiter: RateLimiter, clock: Clock, gaps: list[float]) -> list[float]:
    """Callers arrive after ``gaps`` and each sends when its ``reserve()`` wait ends."""
    sends = []
    for gap in gaps:
        clock.now += gap
        wait = limiter.reserve()
        assert wait >= 0
        sends.append(clock.now + wait)
    return sends


RATES = st.one_of(st.floats(0.2, 500.0), st.sampled_from([1.0, 2.5, 3.0, 4.0, 10.0, 100.0 / 3]))
BURSTS = st.integers(0, 20)
GAPS = st.lists(st.one_of(st.just(0.0), st.floats(0.0, 0.05), st.floats(0.0, 3.0)), max_size=300)
