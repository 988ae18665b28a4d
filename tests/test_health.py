"""/healthz's decision (agents.health): the event loop beats; a watchdog thread notices
when it stops, logs one WARNING with the main thread's stack, and /healthz fails."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from agents.health import LoopWatchdog
from examples.support.process import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_blocked_loop_is_logged_once_and_fails_until_it_has_answered_for_the_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    watchdog = LoopWatchdog(limit=10, clock=clock)
    watchdog.check()  # no beat yet: nothing to say
    watchdog.beat()
    clock.now += 9
    watchdog.check()
    assert watchdog.reasons() == [] and not caplog.records
    clock.now += 2  # 11 s without a beat
    with caplog.at_level(logging.WARNING, "agents.health"):
        watchdog.check()
        watchdog.check()  # the same stall: one line
    [warning] = caplog.records
    assert warning.getMessage().startswith("event loop blocked for 11.0s (limit 10s); /healthz fails;")
    assert "test_health.py" in warning.getMessage()  # where the main thread is (this test)
    assert watchdog.reasons() == ["event loop blocked for 11.0s (limit 10s)"]
    caplog.clear()
    clock.now += 1
    with caplog.at_level(logging.INFO, "agents.health"):
        watchdog.beat()  # the loop answers again after 12 s
    assert [r.getMessage() for r in caplog.records] == [
        "event loop answers again after being blocked for 12.0s"
    ]
    assert watchdog.reasons() == ["event loop was blocked for 12.0s (limit 10s), 0.0s ago"]
    clock.now += 10
    watchdog.beat()
    assert watchdog.reasons() == ["event loop was blocked for 12.0s (limit 10s), 10.0s ago"]
    clock.now += 0.5
    watchdog.beat()
    assert watchdog.reasons() == []


async def test_the_watchdog_thread_sees_a_real_blocked_loop(caplog: pytest.LogCaptureFixture) -> None:
    watchdog = LoopWatchdog(limit=0.3)
    beating = asyncio.ensure_future(watchdog.beat_forever(every=0.05))
    watchdog.start(every=0.05)
    try:
        await wait_for(lambda: watchdog.last_beat is not None, 5, "the first beat")
        with caplog.at_level(logging.WARNING, "agents.health"):
            time.sleep(0.8)  # blocks the loop, as a CPU-bound step would
            await wait_for(lambda: watchdog.last_stall is not None, 5, "the loop's next beat")
        assert watchdog.reasons()[0].startswith("event loop was blocked for 0.")
        messages = [r.getMessage() for r in caplog.records]
        assert len(messages) == 2, messages
        assert messages[0].startswith("event loop blocked for ") and "time.sleep(0.8)" in messages[0]
        assert messages[1].startswith("event loop answers again after being blocked for 0.")
    finally:
        watchdog.stop()
        beating.cancel()
