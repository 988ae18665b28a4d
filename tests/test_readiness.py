"""/ready's decision: in the group with an assignment, the producer connected, a fetch
answered lately; and one log line when the answer changes."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agents.readiness import FETCH_SILENCE, Readiness
from examples.support.process import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ready_only_when_assigned_connected_and_fetching(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    connected = False
    fetched: float | None = None
    readiness = Readiness(clock=clock, producer_connected=lambda: connected, last_fetch=lambda: fetched)
    assert readiness.reasons() == ["not a member of its consumer group yet (joining or rebalancing)",
                                   "producer not connected to Kafka"]  # fmt: skip
    readiness.partitions_assigned(owned=3)
    readiness.broker_failed("KafkaConnectionError: Unable to bootstrap from [('127.0.0.1', 1)]")
    assert readiness.reasons() == ["producer not connected to Kafka (last error: KafkaConnectionError: "
                                   "Unable to bootstrap from [('127.0.0.1', 1)])"]  # fmt: skip
    connected = True
    readiness.broker_answered()
    assert readiness.reasons() == []  # no fetch answered yet: counted from the assignment
    clock.now += FETCH_SILENCE + 1
    assert readiness.reasons() == ["no fetch answered by Kafka for 31s"]
    fetched = clock.now - 2
    assert readiness.reasons() == []
    readiness.partitions_assigned(owned=0)  # an idle member fetches nothing: still ready
    clock.now += 100
    assert readiness.reasons() == []
    readiness.partitions_revoked()
    assert readiness.reasons() == ["not a member of its consumer group yet (joining or rebalancing)"]

    with caplog.at_level(logging.INFO, "agents.readiness"):
        readiness.log_changes()  # never ready yet: starting is not a change
        readiness.partitions_assigned(owned=0)
        readiness.log_changes()
        connected = False
        clock.now += 5
        readiness.log_changes()
        readiness.log_changes()  # still not ready: no second line
        connected = True
        clock.now += 12
        readiness.log_changes()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "not ready: producer not connected to Kafka"),
        ("INFO", "ready again after 12s"),
    ]


def test_back_pressure_is_not_kafka_silence() -> None:
    """While --max-in-flight holds the fetch back (a slow partner), the consumer fetches
    nothing: /ready stays 200 however long that lasts, and counts the 30 s from its end.
    Kafka away meanwhile still shows, as the producer's lost connection."""
    clock = Clock()
    connected = True
    held: float | None = None
    readiness = Readiness(
        clock=clock, producer_connected=lambda: connected, last_fetch=lambda: 1000.0, held_back=lambda: held
    )
    readiness.partitions_assigned(owned=2)
    for _ in range(10):  # held back for 10 minutes: each look is "now"
        clock.now += 60
        held = clock.now
        assert readiness.reasons() == []
    clock.now += FETCH_SILENCE - 1  # no longer held back, and no fetch answered since
    assert readiness.reasons() == []
    clock.now += 2
    assert readiness.reasons() == ["no fetch answered by Kafka for 31s"]
    held = clock.now  # held back again, and Kafka is away: the producer says so
    connected = False
    assert readiness.reasons() == ["producer not connected to Kafka"]


async def test_the_probe_records_answers_and_failures() -> None:
    readiness = Readiness()
    broker_up = False

    async def ask() -> None:
        if not broker_up:
            raise ConnectionRefusedError(111, "Connect call failed")

    probe = asyncio.ensure_future(readiness.probe_forever(ask, every=0.01, tick=0.01))
    try:
        await wait_for(lambda: readiness.last_broker_error is not None, 5, "a failed probe")
        assert "ConnectionRefusedError" in (readiness.last_broker_error or "")
        broker_up = True
        await wait_for(lambda: readiness.last_broker_error is None, 5, "an answered probe")
    finally:
        probe.cancel()
