"""The `exactly_once` scenario of `make reliability` (issue 18): the `faults` scenario's
partner faults, `kill -9` of the worker at random moments and one broker restart, with
the worker on `--guarantee exactly-once`; every lead must have exactly one committed
output, counted by lead id with a `read_committed` consumer.

Why its own reader (not lead_tally.track): the end of the run cannot be found by
comparing records with end offsets (transaction markers take offsets, and an open
transaction holds the last stable offset below the high watermark), and every output a
read_committed reader could ever see must be in before duplicates are counted. The run
ends once the group has committed past every record of the topics it consumes, the
reader's positions reached the last stable offsets, no transaction is open (last stable
offset == high watermark) and all of that held still for STALL seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from disruptions import restart, restart_broker
from faulty_partner import Faults
from group_run import PARTITIONS, Run, Sizes, leads
from lead_tally import Counted, Progress, Tally, output_gap
from partner_process import PartnerProcess, RateSeen

from agents.kafka_connection import KafkaConnection
from agents.kafka_io import Record, committed_offsets, publish
from examples.support.process import wait_for

STALL = 5.0  # s the settled state must hold before the count is final
KILL_SPAN = (0.1, 0.7)  # kills fall at random shares of the leads' outputs in this range
KILL_JITTER = 2.0  # s, a random wait after the share is reached: any moment of a commit interval


@dataclass
class ByLead(Counted):
    """Inputs and final outputs (enriched + errors) by lead id, as read_committed sees them."""

    inputs: set[str] = field(default_factory=set)  # type: ignore[assignment]
    outputs: Counter[str] = field(default_factory=Counter)  # type: ignore[assignment]

    def sample(self) -> str:
        """A few lost and duplicated ids, for the line of a failed run."""
        lost = sorted(self.inputs - set(self.outputs))[:3]
        twice = [lead for lead, count in self.outputs.most_common(3) if count > 1]
        return (f" lost_ids={lost}" if lost else "") + (f" duplicated_ids={twice}" if twice else "")


class CommittedReader:
    """Reads every topic of the run from the beginning with ``read_committed`` into a
    ByLead count (and the run's Tally, for the progress lines and restart times), and says
    when nothing more can arrive."""

    def __init__(self, run: Run, tally: Tally) -> None:
        self.run, self.tally = run, tally
        self.count = ByLead()
        self.partitions = [TopicPartition(t, p) for t in run.topics for p in range(PARTITIONS)]
        self.last_record: dict[TopicPartition, int] = {}  # the offset of the last committed record read
        options = KafkaConnection.of(run.kafka).client_options()
        self.reader = AIOKafkaConsumer(
            **options, group_id=None, enable_auto_commit=False, isolation_level="read_committed"
        )
        # Its end offsets are the high watermarks: above a last stable offset, a transaction is open.
        self.watermarks = AIOKafkaConsumer(**options, group_id=None, enable_auto_commit=False)
        self.task: asyncio.Future[None] | None = None
        self.unsettled = ""  # why the run is not finished yet (settle)
        self.step = ""  # what snapshot is asking Kafka

    async def __aenter__(self) -> CommittedReader:
        await self.reader.start()
        await self.watermarks.start()
        self.reader.assign(self.partitions)
        await self.reader.seek_to_beginning(*self.partitions)
        self.task = asyncio.ensure_future(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.reader.stop()
        await self.watermarks.stop()

    async def _read(self) -> None:
        topics = self.run.topics
        final = {topics[1], topics[2]}
        while True:
            fetched = await self.reader.getmany(timeout_ms=200, max_records=5000)
            for tp, messages in fetched.items():
                for message in messages:
                    self._add(message, topics[0], final)
                    self.last_record[tp] = message.offset

    def _add(self, message: ConsumerRecord[bytes, bytes], input_topic: str, final: set[str]) -> None:
        record = Record(message.topic, message.partition, message.offset, message.key,
                        message.value or b"", message.timestamp)  # fmt: skip
        self.tally.add(record, input_topic, final)
        if record.topic == input_topic:
            self.count.inputs.add((record.key or b"").decode())
        elif record.topic in final:
            self.count.outputs[orjson.loads(record.value)["id"]] += 1

    async def snapshot(self) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]] | str:
        """The last stable offsets and high watermarks if the run looks finished (everything
        consumed is committed, the reader is at the end, no transaction open), else what is
        not finished yet."""
        self.step = "last stable offsets"
        stable = await self.reader.end_offsets(self.partitions)
        self.step = "high watermarks"
        high = await self.watermarks.end_offsets(self.partitions)
        self.step = "reader positions"
        for tp in self.partitions:
            if high[tp] > stable[tp]:  # a transaction is open: outputs may still appear
                return f"open transaction on {tp.topic}[{tp.partition}] ({stable[tp]} < {high[tp]})"
            if (position := await self.reader.position(tp)) < stable[tp]:
                return f"read {tp.topic}[{tp.partition}] to {position} of {stable[tp]}"
        self.step = "the group's committed offsets"
        committed = await committed_offsets(self.run.kafka, self.run.prefix)
        for tp in self.partitions:
            # Past its last committed record (not its end: markers, and aborted records, follow).
            last = self.last_record.get(tp)
            at = committed.get((tp.topic, tp.partition), 0)
            if tp.topic in self.run.consumed and last is not None and at <= last:
                return f"group committed {tp.topic}[{tp.partition}] at {at}, its last record is {last}"
        return stable, high

    async def settle(self, expected: int, deadline: float) -> bool:
        """Until the run is finished (True), or ``deadline`` (time.monotonic()) passes (False)."""
        seen: tuple[float, object, int] | None = None  # (when, snapshot, outputs read) first seen
        self.unsettled = "inputs not all read"
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)  # polling: Kafka announces neither commits nor aborts
            if len(self.count.inputs) < expected:
                continue
            state: object = None
            try:
                state = await asyncio.wait_for(self.snapshot(), 10)
            except (TimeoutError, KafkaError, OSError) as exc:  # e.g. the broker restarting
                self.unsettled = f"{type(exc).__name__} asking Kafka for {self.step}"
            if isinstance(state, str):
                self.unsettled, state = state, None
            outputs = sum(self.count.outputs.values())
            if state is None or seen is None or seen[1:] != (state, outputs):
                seen = None if state is None else (time.monotonic(), state, outputs)
            elif time.monotonic() - seen[0] >= STALL:
                return True
        return False

    async def aborted(self) -> int:
        """Records on the output topics that read_uncommitted sees beyond read_committed:
        the outputs of the transactions the kills aborted."""
        outputs = [tp for tp in self.partitions if tp.topic in self.run.topics[1:3]]
        consumer = self.watermarks
        ends = await consumer.end_offsets(outputs)
        consumer.assign(outputs)
        await consumer.seek_to_beginning(*outputs)
        seen = 0
        deadline = time.monotonic() + 60
        while any([await consumer.position(tp) < ends[tp] for tp in outputs]) and time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=200, max_records=5000)
            seen += sum(len(messages) for messages in fetched.values())
        return seen - sum(self.count.outputs.values())


def kill_moments(rng: random.Random, leads: int, kills: int) -> list[tuple[int, float]]:
    """(outputs to wait for, then seconds to wait) for each kill, in order."""
    shares = sorted(rng.uniform(*KILL_SPAN) for _ in range(kills))
    return [(int(share * leads), rng.uniform(0, KILL_JITTER)) for share in shares]


async def scenario_exactly_once(
    bootstrap: str,
    state: str,
    workdir: Path,
    sizes: Sizes,
    loglevel: str = "warning",
    seed: int | None = None,
    guarantee: str = "exactly-once",
) -> tuple[str, Run, Tally]:
    """Partner faults; SIGKILL the exactly-once worker at random moments, restart it with
    the same instance id; restart the broker once; count outputs by lead id. (``guarantee``
    at-least-once: the same run shows duplicates, which fail it; for the harness's own test.)"""
    seed = random.randrange(1 << 30) if seed is None else seed
    rng = random.Random(seed)
    run = Run(bootstrap, workdir, sizes.rate, Faults(), loglevel=loglevel, guarantee=guarantee)
    partner = PartnerProcess(run.api_key, run.faults, workdir / f"{run.prefix}-partner.log")
    tally = Tally()
    progress = Progress("exactly_once", sizes.eos_leads, tally, run)
    recoveries: list[float] = []
    started = time.monotonic()
    try:
        async with progress.reporting():
            await run.start(await partner.start())  # first: it creates the topics, with PARTITIONS
            async with CommittedReader(run, tally) as reader:
                await publish(bootstrap, run.topics[0], leads(sizes.eos_leads, run.prefix))
                worker = run.processes[0]
                for kill, (share, jitter) in enumerate(
                    kill_moments(rng, sizes.eos_leads, sizes.eos_kills), 1
                ):
                    label = f"kill {kill}/{sizes.eos_kills}"
                    progress.enter(f"{label}: waiting for {share} outputs, then {jitter:.1f}s")
                    await wait_for(
                        lambda s=share: len(reader.count.outputs) >= s, 300, f"outputs before {label}"
                    )
                    await asyncio.sleep(jitter)  # the random moment itself, not a synchronisation
                    worker.kill()
                    progress.event(label)
                    recoveries.append(await restart(worker, tally, progress, label))
                progress.enter("waiting for 80% of the outputs before the broker restart")
                await wait_for(
                    lambda: len(reader.count.outputs) >= sizes.eos_leads * 0.8, 300, "80% of the outputs"
                )
                away, back = await restart_broker(state, progress)
                progress.enter("waiting until everything is committed and read")
                settled = await reader.settle(sizes.eos_leads, started + sizes.deadline)
                aborted = await reader.aborted() if settled else None
                alive = worker.alive
                stats = await partner.stats()
    finally:
        run.stop()
        partner.stop()
    count = reader.count
    seen = RateSeen.of(stats["arrivals"], sizes.rate)  # type: ignore[arg-type]
    line = (
        f"exactly_once: in={len(count.inputs)} out={len(count.outputs)} lost={count.lost} "
        f"duplicates={count.duplicates} aborted_outputs={aborted} kills={sizes.eos_kills} "
        f"recovery_s={recoveries} broker_restarts=1 broker_away_s={away} "
        f"broker_gap_s={output_gap(tally, back)} worker_alive={alive} settled={settled or reader.unsettled} "
        f"max_rps={seen.max_rps} limit={sizes.rate}{progress.over(seen)} seed={seed} "
        f"partner={stats['outcomes']}{count.sample()}"
    )
    ok = settled and alive and len(count.inputs) == sizes.eos_leads and count.lost == 0
    ok = ok and count.duplicates == 0 and seen.max_rps <= math.ceil(sizes.rate)
    ok = ok and max(recoveries, default=0) <= sizes.eos_recovery_bound
    return ("" if ok else "FAILED ") + line, run, tally
