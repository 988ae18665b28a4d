"""Exactly-once's two rules in the worker, without a broker: outputs are written in input
order per partition (so whatever the order leads finish in, a transaction holds exactly the
outputs of the offsets it commits), and a commit never runs while a write is half done."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from faust.types import TP, Message
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from test_inflight import Ledger, Producer

from agents.inflight import LeadLoop
from agents.observe import LeadObserver
from agents.output import OutputWriter
from agents.write_gate import WriteGate
from streams.metrics import Metrics
from streams.pipeline import Destination, Output

TOPICS = {Destination.ENRICHED: "out.enriched", Destination.ERRORS: "out.errors"}


def message(partition: int, offset: int) -> Message:
    value = f"{partition}:{offset}".encode()
    return Message("leads", partition, offset, 0.0, None, None, b"k", value, None, tp=TP("leads", partition))


class Gated:
    """Each lead finishes when the test says so."""

    def __init__(self) -> None:
        self.go: dict[bytes, asyncio.Event] = {}

    async def process(self, msg: Message) -> Output:
        await self.go.setdefault(msg.value, asyncio.Event()).wait()
        return Output(Destination.ENRICHED, b"k", msg.value, "success")

    def finish(self, value: bytes) -> None:
        self.go.setdefault(value, asyncio.Event()).set()


def in_order_loop(process: Gated, ledger: Ledger, producer: Producer) -> LeadLoop:
    metrics = Metrics(CollectorRegistry())
    writer = OutputWriter(producer, TOPICS, "flow", metrics)
    app = SimpleNamespace(consumer=SimpleNamespace(highwater=lambda tp: None))
    observer = LeadObserver(app, metrics, "flow", writer.topic_of)  # type: ignore[arg-type]
    return LeadLoop(process.process, ledger, writer, observer, 100, in_order=True)


async def settle() -> None:
    for _ in range(10):  # the finished tasks' callbacks, then the writer's write and acks
        await asyncio.sleep(0)


@settings(max_examples=60, deadline=None)
@given(st.permutations([(p, o) for p in (0, 1) for o in range(6)]))
def test_outputs_are_written_in_input_order_whatever_order_leads_finish_in(
    order: list[tuple[int, int]],
) -> None:
    async def run() -> None:
        gated, ledger, producer = Gated(), Ledger(), Producer()
        loop = in_order_loop(gated, ledger, producer)
        writing = asyncio.ensure_future(loop.write_forever())
        try:
            await loop.admit([message(p, o) for p in (0, 1) for o in range(6)], lambda m: True)
            for partition, offset in order:
                gated.finish(f"{partition}:{offset}".encode())
                await settle()
                for p in (0, 1):  # what is written is a prefix of the partition's inputs
                    written = [int(v.split(b":")[1]) for v in producer.sent if v.startswith(b"%d:" % p)]
                    assert written == list(range(len(written)))
                assert sorted(ledger.acked) == sorted(int(v.split(b":")[1]) for v in producer.sent)
            await asyncio.wait_for(loop.until_idle(), 5)
        finally:
            writing.cancel()
        assert len(producer.sent) == 12

    asyncio.run(run())


async def test_a_hand_back_gives_back_what_is_held_behind_a_lead_given_back() -> None:
    gated, ledger, producer = Gated(), Ledger(), Producer()
    loop = in_order_loop(gated, ledger, producer)
    writing = asyncio.ensure_future(loop.write_forever())
    try:
        await loop.admit([message(0, o) for o in range(3)], lambda m: True)
        gated.finish(b"0:1")
        gated.finish(b"0:2")
        await settle()
        assert producer.sent == []  # held behind offset 0
        loop.hand_back()
        await asyncio.wait_for(loop.until_idle(), 5)
    finally:
        writing.cancel()
    assert producer.sent == [] and ledger.acked == []
    assert sorted(ledger.released) == [0, 1, 2]


async def test_a_commit_waits_for_the_write_in_flight_and_holds_new_ones() -> None:
    gate, steps = WriteGate(), []
    sent = asyncio.Event()

    async def write(name: str, until: asyncio.Event | None = None) -> None:
        async with gate.writing():
            steps.append(f"{name} starts")
            if until is not None:
                await until.wait()
            steps.append(f"{name} acked")

    async def commit() -> None:
        async with gate.exclusive():
            steps.append("commit")
            await asyncio.sleep(0)

    first = asyncio.ensure_future(write("first", sent))
    await asyncio.sleep(0)
    committing = asyncio.ensure_future(commit())
    await asyncio.sleep(0)
    second = asyncio.ensure_future(write("second"))
    await asyncio.sleep(0)
    assert steps == ["first starts"]
    sent.set()
    await asyncio.gather(first, committing, second)
    assert steps == ["first starts", "first acked", "commit", "second starts", "second acked"]


async def test_the_inputs_are_acked_inside_the_write_and_a_refused_write_gives_up() -> None:
    metrics = Metrics(CollectorRegistry())
    gave_up: list[str] = []

    class Refusing(Producer):
        async def send_batch(self, batch: object, topic: str, *, partition: int) -> asyncio.Future[None]:
            raise ConnectionError("broker away")

    async def give_up(why: str) -> None:  # the real one exits the process
        gave_up.append(why)

    acked: list[bool] = []
    writer = OutputWriter(Producer(), TOPICS, "flow", metrics, attempts=1, give_up=give_up)  # type: ignore[arg-type]
    output = Output(Destination.ENRICHED, b"k", b"v", "success")
    await writer.write_all([output], then=lambda: acked.append(writer.gate._writes.value == 1))
    assert acked == [True]  # while the write still held the gate
    refusing = OutputWriter(Refusing(), TOPICS, "flow", metrics, attempts=1, give_up=give_up)  # type: ignore[arg-type]
    await refusing.write_all([output], then=lambda: acked.append(True))
    assert gave_up == ["Kafka did not acknowledge 1 outputs"]
