"""The rate limiter under concurrent callers on the real clock, and the
write gate that holds actual write times to the bound ``ceil(rate) + burst``."""

from __future__ import annotations

import asyncio
import heapq
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ratelimit_helpers import BURSTS, RATES, Clock, bound, simulate

from streams.ratelimit import NoLimit, RateLimiter, busiest_window, take_write_gate

# -- concurrency, real clock -----------------------------------------------------------------------


async def test_concurrent_tasks_never_exceed_the_bound() -> None:
    """200 tasks race for 120.5/s + 4 (bound 125): ~1.6 s of real time, measured, not synchronised;
    the send time is taken where the transport writes, after the write gate.

    The fractional rate is deliberate: 126 sends need 121 intervals, 4 ms more than a second, which
    absorbs event-loop wake-up jitter (late wake-ups of a window's first send would shrink it). With
    an integer rate the margin is nanoseconds and the measurement would judge asyncio, not us.
    """
    limiter = RateLimiter(120.5, burst=4)
    sent: list[float] = []

    async def caller() -> None:
        await limiter.acquire()
        gate = take_write_gate()
        assert gate is not None
        await gate.wait_to_write()  # what the transport does right before the write
        sent.append(time.monotonic())

    started = time.monotonic()
    await asyncio.gather(*(caller() for _ in range(200)))
    assert busiest_window(sent) <= bound(120.5, 4)
    assert max(sent) - started == pytest.approx(195 / 120.5, abs=0.3)


async def test_acquire_returns_the_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(1000, clock=clock)
    assert await limiter.acquire() == 0.0
    assert await limiter.acquire() == pytest.approx(0.001, abs=1e-6)


def test_the_protections_window_keeps_the_mean_within_five_percent_of_the_limit() -> None:
    """streams.protections paces at limit / (1 + ARRIVAL_JITTER): at least 95 % of the limit on average,
    never more than the limit in any second (nor, for the writes, in any 1 + ARRIVAL_JITTER)."""
    from streams.protections import ARRIVAL_JITTER

    clock = Clock()
    limiter = RateLimiter(400, 0, clock, 1.0 + ARRIVAL_JITTER)
    sends = simulate(limiter, clock, [0.0] * 4000)
    assert (len(sends) - 1) / (sends[-1] - sends[0]) >= 0.95 * 400
    assert busiest_window(sends, 1.0 + ARRIVAL_JITTER) <= 400


# -- the write gate --------------------------------------------------------------------------------


def writes(limiter: RateLimiter, clock: Clock, attempts: list[float]) -> list[float]:
    """Writes tried at ``attempts`` (any order, bunched as a stalled loop bunches them); each
    that must wait tries again when ``write_wait`` says. The write times recorded."""
    pending = [(moment, index) for index, moment in enumerate(attempts)]
    heapq.heapify(pending)
    written = []
    while pending:
        moment, index = heapq.heappop(pending)
        clock.now = max(clock.now, moment)
        wait = limiter.write_wait()
        if wait == 0.0:
            written.append(clock.now)
        else:
            assert wait > 0
            heapq.heappush(pending, (clock.now + wait, index))
    return written


@given(
    rate=RATES,
    burst=BURSTS,
    attempts=st.lists(st.one_of(st.floats(0.0, 3.0), st.sampled_from([0.5, 1.0, 1.5])), max_size=400),
    window=st.sampled_from([1.0, 1.03]),
    share=st.sampled_from([1.0, 0.5, 1 / 3]),
)
def test_no_window_holds_more_writes_than_the_cap(
    rate: float, burst: int, attempts: list[float], window: float, share: float
) -> None:
    clock = Clock()
    limiter = RateLimiter(rate, burst, clock, window)
    limiter.set_share(share)
    written = writes(limiter, clock, attempts)
    assert len(written) == len(attempts)
    assert busiest_window(written, window) <= limiter.cap
    if share == 1.0:
        assert limiter.cap == bound(rate, burst)


def test_write_caps_of_shares_add_up_to_at_most_the_groups() -> None:
    limiter = RateLimiter(10, burst=3, clock=Clock())
    assert limiter.cap == 13
    limiter.set_share(1 / 3)  # 3.33/s and a burst of 1 each: 3 + 1, three workers 12 <= 13
    assert limiter.cap == 4
    limiter.set_share(0.5)
    assert limiter.cap == 6
    assert RateLimiter(2.5, clock=Clock()).cap == 3  # ceil: the whole group's bound


def test_a_lower_share_waits_until_the_recent_writes_fit() -> None:
    clock = Clock()
    limiter = RateLimiter(100, clock=clock)
    writes(limiter, clock, [index / 100 for index in range(100)])  # 0.00 .. 0.99
    clock.now = 1.0
    limiter.set_share(0.5)
    # (0, 1.0] holds 99 writes; the 50th latest (0.50) must leave the window first.
    assert limiter.write_wait() == pytest.approx(0.5, abs=1e-6)


async def test_acquire_arms_the_write_gate_for_one_write() -> None:
    limiter = RateLimiter(1000, clock=Clock())
    assert take_write_gate() is None
    await limiter.acquire()
    assert take_write_gate() is limiter
    assert take_write_gate() is None  # taken: a second request must acquire again
    assert await NoLimit().acquire() == 0.0 and take_write_gate() is None


async def test_writes_whose_turn_comes_late_are_held_to_the_bound() -> None:
    """GCRA spaces the acquires; what happens between an acquire and its write (a new connection,
    a busy event loop) differs per request. Here the first 25 of 100 callers at 50/s reach their
    write 0.5 s late, landing among the writes of the next 25: without the gate 75 writes share one
    second. The gate makes the late ones wait their turn."""
    limiter = RateLimiter(50.0)
    written: list[float] = []

    async def caller(index: int) -> None:
        await limiter.acquire()
        gate = take_write_gate()
        if index < 25:
            await asyncio.sleep(0.5)  # this request's write comes late
        assert gate is limiter
        await gate.wait_to_write()
        written.append(time.monotonic())

    await asyncio.gather(*(caller(index) for index in range(100)))
    assert busiest_window(written) <= 50


async def test_a_cancelled_write_wait_records_nothing() -> None:
    clock = Clock()
    limiter = RateLimiter(1, clock=clock)
    assert await limiter.wait_to_write() == 0.0
    waiting = asyncio.ensure_future(limiter.wait_to_write())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    clock.now = 1.001
    assert limiter.write_wait() == 0.0  # the first write left the window; the cancelled one never counted
