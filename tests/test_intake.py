"""The lead intake without a broker: what a fetch hands to the lead loop (in chunks, in
order, skipping what was read before), when a fetched message may still be taken, that a
flow's leads wait until its lead agent attached its loop, and that a flow that cannot take
its leads (its cap reached, a reload draining it) parks them and pauses its partitions
while another flow's leads go on. The consumer is the real LeadConsumer of an app that
never connects; the fetch is a list of (tp, message)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

import pytest
from faust.types import TP, Message

from agents.faust_seam import LeadApp, LeadConsumer
from agents.intake import LeadIntake, current

LEADS, SECOND, OTHER = "leads", "second", "other"


class Loop:
    """The lead loop as the intake sees it: what it was asked to admit, and whether; a
    ``limit`` of slots that ``free`` gives back (``admit`` waits for them, as the loop's)."""

    def __init__(self, limit: int = 1000) -> None:
        self.admitted: list[list[int]] = []
        self.taken: list[int] = []
        self.admitting = True
        self.slots = asyncio.Semaphore(limit)
        self.used = 0
        self.limit = limit

    @property
    def room(self) -> int:
        return self.limit - self.used

    async def admit(self, messages: Sequence[Message], is_current: Callable[[Message], bool]) -> None:
        self.admitted.append([message.offset for message in messages])
        for message in messages:
            await self.slots.acquire()
            self.used += 1
            if self.admitting and is_current(message):
                self.taken.append(message.offset)

    def free(self, count: int) -> None:
        for _ in range(count):
            self.used -= 1
            self.slots.release()

    def stop_admitting(self) -> None:
        self.admitting = False

    def held_back_at(self) -> float | None:
        return None

    @property
    def unwritten(self) -> int:
        return self.used


def message(offset: int, partition: int = 0, topic: str = LEADS, generation: int = 0) -> Message:
    made = Message(topic, partition, offset, 0.0, 0, None, b"k", b"v", None, tp=TP(topic, partition))
    made.generation_id = generation
    return made


async def fetched(pairs: Sequence[Message]) -> AsyncIterator[tuple[TP, Message]]:
    for each in pairs:
        yield each.tp, each


@pytest.fixture
async def app() -> LeadApp:
    made = LeadApp("intake-unit", broker="kafka://127.0.0.1:1", autodiscover=False)
    # What a started consumer would own (this one never connects).
    assigned = {TP(topic, partition) for topic in (LEADS, SECOND) for partition in range(2)}
    made.consumer.assignment = lambda: assigned  # type: ignore[method-assign]
    return made


def intake_of(app: LeadApp, chunk: int = 3, limit: int = 1000) -> tuple[LeadIntake, Loop]:
    intake, loop = LeadIntake(app, chunk), Loop(limit)
    intake.add(LEADS).attach(loop)  # type: ignore[arg-type]  # the loop's interface only
    app.intake = intake
    return intake, loop


async def until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), 5)


def paused(app: LeadApp) -> set[TP]:
    return set(app.consumer._paused_partitions)


def test_a_message_is_current_only_while_flow_runs_and_from_this_generation(app: LeadApp) -> None:
    assert not current(app, message(0))  # flow control starts suspended (nothing assigned)
    app.flow_control.resume()
    assert current(app, message(0))
    assert not current(app, message(0, generation=app.consumer_generation_id - 1))
    app.flow_control.suspend()  # a rebalance hands partitions over
    assert not current(app, message(0))


async def test_leads_wait_until_the_loop_is_attached(app: LeadApp) -> None:
    intake, loop = LeadIntake(app, 10), Loop()
    flow = intake.add(LEADS)
    app.flow_control.resume()
    await intake.deliver([message(0)])  # parked: the fetch goes on
    assert loop.taken == [] and flow.parked == 1
    flow.attach(loop)  # type: ignore[arg-type]
    await until(lambda: loop.taken == [0])  # no lead may be left out while later ones are acked


async def test_once_removed_nothing_more_is_taken(app: LeadApp) -> None:
    intake, loop = intake_of(app)
    app.flow_control.resume()
    await intake.deliver([message(0)])
    intake.flows[LEADS].remove()
    await intake.deliver([message(1)])
    assert loop.taken == [0]


async def test_a_full_flow_parks_and_pauses_while_another_flows_leads_go_on(app: LeadApp) -> None:
    intake, full = intake_of(app, chunk=10, limit=2)
    other = Loop()
    intake.add(SECOND).attach(other)  # type: ignore[arg-type]
    app.flow_control.resume()
    await intake.deliver([message(0), message(1), message(2), message(0, topic=SECOND)])
    assert full.taken == [] and paused(app) == {TP(LEADS, 0)}  # 3 leads, room for 2: all wait, in order
    assert other.taken == [0]  # the other flow's lead did not wait behind them
    await until(lambda: full.taken == [0, 1])  # its own task admits what fits
    await intake.deliver([message(3), message(1, topic=SECOND)])  # parked behind the waiting one
    assert other.taken == [0, 1] and full.taken == [0, 1]
    full.free(2)
    await until(lambda: full.taken == [0, 1, 2, 3])
    await until(lambda: not paused(app))  # all admitted: fetched again


async def test_a_closed_flow_parks_until_reopened_in_order(app: LeadApp) -> None:
    intake, loop = intake_of(app, chunk=10)
    app.flow_control.resume()
    flow = intake.flows[LEADS]
    flow.close()  # a reload drains the flow
    await intake.deliver([message(0), message(1)])
    await asyncio.sleep(0.01)  # (a chance to admit that must not be taken)
    assert loop.taken == [] and paused(app) == {TP(LEADS, 0)}
    flow.reopen()
    await until(lambda: loop.taken == [0, 1])
    await until(lambda: not paused(app))


async def test_a_fetch_goes_to_the_loop_in_chunks_in_order(app: LeadApp) -> None:
    consumer = app.consumer
    assert isinstance(consumer, LeadConsumer)
    intake, loop = intake_of(app, chunk=3)
    app.flow_control.resume()
    records = [message(offset, partition=offset % 2) for offset in range(7)]
    await consumer._deliver(intake, fetched(records))
    assert loop.admitted == [[0, 1, 2], [3, 4, 5], [6]]
    assert loop.taken == list(range(7))
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


async def test_a_parking_flow_pauses_again_after_a_rebalance_unpaused_it(app: LeadApp) -> None:
    intake, full = intake_of(app, chunk=10, limit=1)
    app.flow_control.resume()
    await intake.deliver([message(0), message(1)])
    assert paused(app) == {TP(LEADS, 0)}
    app.consumer.resume_partitions({TP(LEADS, 0)})  # what a rebalance does to what it reassigns
    await intake.deliver([message(2)])
    assert paused(app) == {TP(LEADS, 0)}  # else the parked leads grow while the flow stays full
    full.free(1)
    await until(lambda: full.taken == [0, 1])


async def test_what_a_removed_flow_fetches_holds_the_commit_until_revoked(app: LeadApp) -> None:
    """Between a flow's removal and the rebalance that takes its partitions away, a fetch may
    still bring its leads: not taken, and the commit must not pass them."""
    intake, _ = intake_of(app)
    app.flow_control.resume()
    ledger, tp = app.consumer.ledger, TP(LEADS, 0)
    ledger.take(tp, 4)
    ledger.finish(tp, 4)
    intake.flows[LEADS].remove()
    await intake.deliver([message(5), message(6, generation=-1)])
    ledger.take(tp, 7)  # a later lead finished (another path): still not past 5
    ledger.finish(tp, 7)
    assert ledger.committable(tp) == 5
