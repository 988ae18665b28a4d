"""/ready's decision: in the group with an assignment, and the broker answered lately."""

from __future__ import annotations

import asyncio

from agents.process import wait_for
from agents.readiness import BROKER_SILENCE, Readiness


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ready_only_when_assigned_and_the_broker_answered_lately() -> None:
    clock = Clock()
    readiness = Readiness(clock=clock)
    assert len(readiness.reasons()) == 2
    readiness.partitions_assigned()
    readiness.broker_failed("KafkaConnectionError: Unable to bootstrap from [('127.0.0.1', 1)]")
    assert readiness.reasons() == ["no answer from the broker yet: KafkaConnectionError: Unable to bootstrap "
                                   "from [('127.0.0.1', 1)]"]  # fmt: skip
    readiness.broker_answered()
    assert readiness.reasons() == []
    clock.now += BROKER_SILENCE + 1
    readiness.broker_failed("NodeNotReadyError")
    assert readiness.reasons() == ["no answer from the broker for 31s: NodeNotReadyError"]
    readiness.broker_answered()
    readiness.partitions_revoked()
    assert readiness.reasons() == ["not a member of its consumer group yet (joining or rebalancing)"]


async def test_the_probe_records_answers_and_failures() -> None:
    readiness = Readiness()
    broker_up = False

    async def ask() -> None:
        if not broker_up:
            raise ConnectionRefusedError(111, "Connect call failed")

    probe = asyncio.ensure_future(readiness.probe_forever(ask, every=0.01))
    try:
        await wait_for(lambda: readiness.last_broker_error is not None, 5, "a failed probe")
        assert readiness.last_broker_answer is None
        assert "ConnectionRefusedError" in (readiness.last_broker_error or "")
        broker_up = True
        await wait_for(lambda: readiness.last_broker_answer is not None, 5, "an answered probe")
        assert readiness.last_broker_error is None
    finally:
        probe.cancel()
