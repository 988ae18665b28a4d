"""The lead intake without a broker: what a fetch hands to the lead loop (in chunks, in
order, skipping what was read before), when a fetched message may still be taken, and
that a fetch waits until the lead agent attached its loop. The consumer is the real
LeadConsumer of an app that never connects; the fetch is a list of (tp, message)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

import pytest
from faust.types import TP, Message

from agents.faust_seam import LeadApp, LeadConsumer
from agents.intake import LeadIntake, current

LEADS, OTHER = "leads", "other"


class Loop:
    """The lead loop as the intake sees it: what it was asked to admit, and whether."""

    def __init__(self) -> None:
        self.admitted: list[list[int]] = []
        self.taken: list[int] = []
        self.admitting = True

    async def admit(self, messages: Sequence[Message], is_current: Callable[[Message], bool]) -> None:
        self.admitted.append([message.offset for message in messages])
        self.taken += [message.offset for message in messages if self.admitting and is_current(message)]

    def stop_admitting(self) -> None:
        self.admitting = False


def message(offset: int, partition: int = 0, topic: str = LEADS, generation: int = 0) -> Message:
    made = Message(topic, partition, offset, 0.0, 0, None, b"k", b"v", None, tp=TP(topic, partition))
    made.generation_id = generation
    return made


async def fetched(pairs: Sequence[Message]) -> AsyncIterator[tuple[TP, Message]]:
    for each in pairs:
        yield each.tp, each


@pytest.fixture
def app() -> LeadApp:
    return LeadApp("intake-unit", broker="kafka://127.0.0.1:1", autodiscover=False)


def intake_of(app: LeadApp, chunk: int = 3) -> tuple[LeadIntake, Loop]:
    intake, loop = LeadIntake(app, LEADS, chunk), Loop()
    intake.attach(loop)  # type: ignore[arg-type]  # the loop's interface only
    app.intake = intake
    return intake, loop


def test_a_message_is_current_only_while_flow_runs_and_from_this_generation(app: LeadApp) -> None:
    assert not current(app, message(0))  # flow control starts suspended (nothing assigned)
    app.flow_control.resume()
    assert current(app, message(0))
    assert not current(app, message(0, generation=app.consumer_generation_id - 1))
    app.flow_control.suspend()  # a rebalance hands partitions over
    assert not current(app, message(0))


async def test_a_fetch_waits_until_the_loop_is_attached(app: LeadApp) -> None:
    intake, loop = LeadIntake(app, LEADS, 10), Loop()
    app.flow_control.resume()
    delivering = asyncio.ensure_future(intake.deliver([message(0)]))
    await asyncio.sleep(0)
    assert not delivering.done()  # no lead may be left out while later ones are acked
    intake.attach(loop)  # type: ignore[arg-type]
    await asyncio.wait_for(delivering, 5)
    assert loop.taken == [0]


async def test_after_detach_nothing_more_is_taken(app: LeadApp) -> None:
    intake, loop = intake_of(app)
    app.flow_control.resume()
    await intake.deliver([message(0)])
    intake.detach()
    await intake.deliver([message(1)])
    assert loop.taken == [0]


async def test_a_fetch_goes_to_the_loop_in_chunks_in_order(app: LeadApp) -> None:
    consumer = app.consumer
    assert isinstance(consumer, LeadConsumer)
    intake, loop = intake_of(app, chunk=3)
    app.flow_control.resume()
    records = [message(offset, partition=offset % 2) for offset in range(7)]
    await consumer._deliver(intake, fetched(records))
    assert loop.admitted == [[0, 1, 2], [3, 4, 5], [6]]
    assert consumer.first_read == {TP(LEADS, 0): 0, TP(LEADS, 1): 1}
    assert consumer._read_offset[TP(LEADS, 0)] == 6 and consumer._read_offset[TP(LEADS, 1)] == 5


async def test_records_read_before_are_skipped(app: LeadApp) -> None:
    consumer = app.consumer
    assert isinstance(consumer, LeadConsumer)
    intake, loop = intake_of(app, chunk=10)
    consumer._read_offset[TP(LEADS, 0)] = 5  # read up to 5 already (a fetch answered twice)
    await consumer._deliver(intake, fetched([message(offset) for offset in range(3, 8)]))
    assert loop.admitted == [[5, 6, 7]]  # Faust drops offsets below its read offset too


async def test_other_topics_take_fausts_path(app: LeadApp, monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = app.consumer
    assert isinstance(consumer, LeadConsumer)
    intake, loop = intake_of(app, chunk=10)
    to_streams: list[int] = []

    async def callback(record: Message) -> None:
        to_streams.append(record.offset)

    monkeypatch.setattr(consumer, "callback", callback)
    await consumer._deliver(intake, fetched([message(0), message(9, topic=OTHER), message(1)]))
    assert to_streams == [9] and loop.admitted == [[0, 1]]
