"""The lead loop as the intake drives it: which fetched messages it takes (tracks, runs,
writes, acks) and which it leaves to be read again. Faust's consumer is replaced by a
ledger that records what it was told; the real consumer is covered by the broker tests."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch
from faust.types import TP, Message
from prometheus_client import CollectorRegistry

from agents.inflight import LeadLoop
from agents.observe import LeadObserver
from agents.output import OutputWriter
from streams.metrics import Metrics
from streams.pipeline import Destination, Output

TOPICS = {Destination.ENRICHED: "out.enriched", Destination.ERRORS: "out.errors"}


class Ledger:
    def __init__(self) -> None:
        self.tracked: list[int] = []
        self.acked: list[int] = []
        self.released: list[int] = []

    def track_message(self, message: Message) -> None:
        self.tracked.append(message.offset)

    def ack(self, message: Message) -> bool:
        self.acked.append(message.offset)
        return True

    def release(self, message: Message) -> None:
        self.released.append(message.offset)


class Producer:
    """Acknowledges every batch at once, like a broker that never fails."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(16384, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future[None]:
        self.sent.extend(record.value for record in records_of(batch))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def records_of(batch: BatchBuilder) -> list[Any]:
    """What a batch holds, read back as the broker would."""
    batch.close()
    return list(DefaultRecordBatch(batch._build()))


def message(offset: int) -> Message:
    return Message("leads", 0, offset, 0.0, None, None, b"k", f"{offset}".encode(), None, tp=TP("leads", 0))


def lead_loop(limit: int = 10, clock: Any = None) -> tuple[LeadLoop, Ledger, Producer]:
    metrics = Metrics(CollectorRegistry())
    ledger, producer = Ledger(), Producer()
    writer = OutputWriter(producer, TOPICS, "flow", metrics)
    app = SimpleNamespace(consumer=SimpleNamespace(highwater=lambda tp: None))
    observer = LeadObserver(app, metrics, "flow", writer.topic_of)  # type: ignore[arg-type]

    async def process(msg: Message) -> Output:
        return Output(Destination.ENRICHED, b"k", msg.value, "success")

    timing = {"clock": clock} if clock is not None else {}
    return LeadLoop(process, ledger, writer, observer, limit, **timing), ledger, producer


async def written(loop: LeadLoop, ledger: Ledger, count: int) -> None:
    """Run the writer until every admitted lead is written and acked."""
    writing = asyncio.ensure_future(loop.write_forever())
    try:
        await asyncio.wait_for(loop.until_idle(), 5)
    finally:
        writing.cancel()
    assert len(ledger.acked) == count


async def test_current_messages_are_tracked_run_written_then_acked() -> None:
    loop, ledger, producer = lead_loop()
    await loop.admit([message(n) for n in range(5)], lambda m: True)
    assert loop.unwritten == 5  # what a stop reports as in flight
    await written(loop, ledger, 5)
    assert loop.unwritten == 0
    assert ledger.tracked == [0, 1, 2, 3, 4]
    assert sorted(ledger.acked) == [0, 1, 2, 3, 4]
    assert sorted(producer.sent) == [b"0", b"1", b"2", b"3", b"4"]


async def test_messages_no_longer_current_are_left_to_be_read_again() -> None:
    """A rebalance began: such messages are neither tracked nor run nor acked."""
    loop, ledger, producer = lead_loop()
    await loop.admit([message(n) for n in range(6)], lambda m: m.offset < 3)
    await written(loop, ledger, 3)
    assert ledger.tracked == [0, 1, 2]
    assert sorted(producer.sent) == [b"0", b"1", b"2"]


async def test_after_stop_admitting_nothing_more_is_taken() -> None:
    loop, ledger, producer = lead_loop()
    await loop.admit([message(0)], lambda m: True)
    loop.stop_admitting()
    await loop.admit([message(1), message(2)], lambda m: True)
    await written(loop, ledger, 1)
    assert ledger.tracked == [0] and producer.sent == [b"0"]


async def test_a_full_loop_holds_the_fetch_until_a_lead_is_written() -> None:
    """Back-pressure: with the cap reached, admit waits instead of taking more."""
    loop, ledger, _ = lead_loop(limit=2)
    admitting = asyncio.ensure_future(loop.admit([message(n) for n in range(4)], lambda m: True))
    await asyncio.sleep(0)  # one scheduler step: admit takes what fits, then waits
    assert ledger.tracked == [0, 1] and not admitting.done()
    writing = asyncio.ensure_future(loop.write_forever())
    try:
        await asyncio.wait_for(admitting, 5)  # written leads free slots: the rest gets in
        await asyncio.wait_for(loop.until_idle(), 5)
    finally:
        writing.cancel()
    assert ledger.tracked == [0, 1, 2, 3] and sorted(ledger.acked) == [0, 1, 2, 3]


async def test_the_loop_says_when_its_cap_held_the_fetch_back() -> None:
    """/ready reads this: while admit waits for a slot, the consumer fetches nothing."""
    now = [100.0]
    loop, ledger, _ = lead_loop(limit=2, clock=lambda: now[0])
    await loop.admit([message(0), message(1)], lambda m: True)
    assert loop.held_back_at() is None  # the cap was reached but never waited at
    admitting = asyncio.ensure_future(loop.admit([message(2)], lambda m: True))
    await asyncio.sleep(0)  # one scheduler step: admit waits for a slot
    assert not admitting.done()
    now[0] = 200.0
    assert loop.held_back_at() == 200.0  # held back right now: "now", however long it waits
    writing = asyncio.ensure_future(loop.write_forever())
    try:
        await asyncio.wait_for(admitting, 5)
        now[0] = 300.0
        assert loop.held_back_at() == 200.0  # when it last got a slot after waiting
        await asyncio.wait_for(loop.until_idle(), 5)
    finally:
        writing.cancel()
    assert ledger.tracked == [0, 1, 2]


async def test_hand_back_gives_running_work_back_unacked_and_writes_what_finished() -> None:
    """Notification deliveries waiting on a rate limit are given back at a hand-over: not
    acked (read again from the commit), released (no longer waited for); the one that
    finished first is still written and acked, and the loop is idle at once."""
    metrics = Metrics(CollectorRegistry())
    ledger, producer = Ledger(), Producer()
    writer = OutputWriter(producer, TOPICS, "flow", metrics)
    app = SimpleNamespace(consumer=SimpleNamespace(highwater=lambda tp: None))
    observer = LeadObserver(app, metrics, "flow", writer.topic_of)  # type: ignore[arg-type]
    never = asyncio.Event()

    async def deliver(msg: Message) -> Output:
        if msg.offset:  # all but the first wait "for a rate limit" forever
            await never.wait()
        return Output(Destination.ENRICHED, b"k", msg.value, "success")

    loop = LeadLoop(deliver, ledger, writer, observer, 10)
    writing = asyncio.ensure_future(loop.write_forever())
    try:
        await loop.admit([message(n) for n in range(4)], lambda m: True)
        await asyncio.sleep(0)  # the first finishes
        loop.hand_back()
        await asyncio.wait_for(loop.until_idle(), 5)
    finally:
        writing.cancel()
    assert ledger.acked == [0] and producer.sent == [b"0"]
    assert sorted(ledger.released) == [1, 2, 3]
    assert loop.unwritten == 0
    await loop.admit([message(4)], lambda m: True)  # the slots came back
    assert loop.unwritten == 1
    loop.hand_back()  # (no task left running when the test's event loop closes)
    await asyncio.wait_for(loop.until_idle(), 5)
