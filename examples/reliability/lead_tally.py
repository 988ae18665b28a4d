"""Accounting for `make reliability`: every input matched to its outputs (Tally), the
progress lines while a scenario waits, and the reader that tracks the run's topics until
each input is accounted for.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass, field

import orjson
from aiokafka.errors import KafkaError
from group_run import Run
from partner_process import RateSeen

from agents.kafka_io import Record, collect, committed_offsets, end_offsets
from agents.topic_reader import count_between
from examples.support.process import wait_for

PROGRESS_EVERY = 10.0  # s between progress lines
STALL = 5.0  # s without an output (and no partner call) before the run asks whether all is committed


class Counted:
    """Inputs, and how often each came out: what was lost and what came out twice."""

    inputs: set[Hashable]
    outputs: Counter[Hashable]

    @property
    def lost(self) -> int:
        return len(self.inputs - set(self.outputs))

    @property
    def duplicates(self) -> int:
        return sum(count - 1 for count in self.outputs.values() if count > 1)


@dataclass
class Tally(Counted):
    """Inputs and final outputs (enriched + errors), matched by the input's partition/offset."""

    inputs: set[tuple[int, int]] = field(default_factory=set)  # type: ignore[assignment]
    outputs: Counter[tuple[int, int]] = field(default_factory=Counter)  # type: ignore[assignment]
    outcomes: Counter[str] = field(default_factory=Counter)
    records: list[Record] = field(default_factory=list)
    without_reason: int = 0  # error events must say why
    keys: dict[bytes, tuple[int, int]] = field(default_factory=dict)  # input key -> partition/offset
    # Per input partition, in arrival order: (the output's Kafka timestamp in s, input offset).
    arrivals: defaultdict[int, list[tuple[float, int]]] = field(default_factory=lambda: defaultdict(list))
    stamps: list[float] = field(default_factory=list)  # the outputs' Kafka timestamps (s), in arrival order
    last_output: float = 0.0  # time.monotonic() of the last output read
    # The next offset to read: the reader's position (past transaction markers and aborted
    # records, which no record shows), or, from records alone, the last one's offset + 1.
    read_to: dict[tuple[str, int], int] = field(default_factory=dict)
    settled: dict[tuple[str, int], int] | None = None  # all committed: the output ends to read up to

    def add(self, record: Record, input_topic: str, final_topics: set[str]) -> None:
        self.records.append(record)
        where = (record.topic, record.partition)
        self.read_to[where] = max(self.read_to.get(where, 0), record.offset + 1)
        if record.topic == input_topic:
            self.inputs.add((record.partition, record.offset))
            self.keys[record.key or b""] = (record.partition, record.offset)
        elif record.topic in final_topics:
            event = orjson.loads(record.value)
            source = (event["input"]["partition"], event["input"]["offset"])
            self.outputs[source] += 1
            self.without_reason += event["outcome"] == "error" and not event.get("reason")
            self.outcomes[f"{record.topic.rsplit('.', 1)[-1]}:{event['outcome']}"] += 1
            self.last_output = time.monotonic()
            self.stamps.append(record.timestamp_ms / 1000)
            self.arrivals[source[0]].append((record.timestamp_ms / 1000, source[1]))

    def written_since(self, partition: int, since: float = 0.0) -> int:
        """The highest offset of ``partition`` with an output written since ``since``
        (time.time()), -1 if none."""
        return max((offset for stamp, offset in self.arrivals[partition] if stamp >= since), default=-1)

    def accounted(self, expected: int) -> bool:
        if len(self.inputs) >= expected and self.inputs <= set(self.outputs):
            return True
        ends = self.settled
        return ends is not None and all(self.read_to.get(where, 0) >= end for where, end in ends.items())


@dataclass
class Progress:
    """What a scenario is waiting for: a line on stderr every PROGRESS_EVERY seconds."""

    scenario: str
    expected: int
    tally: Tally
    run: Run
    phase: str = "starting"
    since: float = field(default_factory=time.monotonic)  # when the phase began
    broker_back: float | None = None  # time.time() the broker came back (the line says if no output since)
    events: list[tuple[float, str]] = field(default_factory=lambda: [(time.time(), "start")])

    def enter(self, phase: str) -> None:
        self.phase, self.since = phase, time.monotonic()
        print(self.line(), file=sys.stderr, flush=True)

    def event(self, label: str) -> None:
        """A fault injected now, to say when something happened relative to it."""
        self.events.append((time.time(), label))

    def relative(self, moment: float) -> str:
        """``moment`` (time.time()) as the last event before it + seconds."""
        when, label = max((event for event in self.events if event[0] <= moment), default=self.events[0])
        return f"{label}+{moment - when:.0f}s"

    def line(self) -> str:
        text = (
            f"  [{self.scenario}] out={len(self.tally.outputs)}/{self.expected} "
            f"{self.phase} ({time.monotonic() - self.since:.0f}s)"
        )
        back = self.broker_back
        if back is not None and not any(stamp >= back for stamp in self.tally.stamps[-1000:]):
            text += f"; no output in the {time.time() - back:.0f}s since the broker came back"
        return text

    async def in_kafka(self) -> str:
        """What Kafka holds: outputs written (and how many of them this run read) and inputs
        committed, so a stall shows whether the worker or the run's reader stopped."""
        run, topics = self.run, self.run.topics
        try:
            ends = await asyncio.wait_for(end_offsets(run.kafka, topics[1:3]), 5)
            committed = await asyncio.wait_for(committed_offsets(run.kafka, run.prefix), 5)
        except (TimeoutError, KafkaError, OSError) as exc:
            return f"; Kafka: {type(exc).__name__}"
        read = sum(self.tally.read_to.get(where, 0) for where in ends)
        inputs = sum(offset for (topic, _), offset in committed.items() if topic == topics[0])
        return f"; Kafka: {sum(ends.values())} output offsets ({read} read), {inputs} inputs committed"

    def over(self, seen: RateSeen) -> str:
        """The sliding seconds above the bound at the partner, each with the fault before it."""
        over = [f"{count}@{self.relative(moment)}" for moment, count in seen.over]
        return f" over_limit={over}" if over else ""

    @contextlib.asynccontextmanager
    async def reporting(self) -> AsyncIterator[Progress]:
        async def report() -> None:
            while True:
                await asyncio.sleep(PROGRESS_EVERY)  # a periodic report; nothing waits on it
                print(self.line() + await self.in_kafka(), file=sys.stderr, flush=True)

        tasks = [asyncio.ensure_future(report())]
        try:
            yield self
        finally:
            for task in tasks:
                task.cancel()


async def track(
    run: Run, expected: int, deadline: float, tally: Tally, busy: Callable[[], bool] = lambda: False
) -> None:
    """Read every topic until each input has an output, or until the group has committed
    everything it reads and its outputs are read (a lost lead then ends the run early)."""
    topics = run.topics
    final = {topics[1], topics[2]}

    def done(_: list[Record]) -> bool:
        return tally.accounted(expected)

    watching = asyncio.ensure_future(watch_settled(run, tally, expected, busy))
    try:
        await collect(
            run.kafka,
            topics,
            done,
            deadline,
            on_record=lambda r: tally.add(r, topics[0], final),
            positions=tally.read_to,
        )
    finally:
        watching.cancel()


async def watch_settled(run: Run, tally: Tally, expected: int, busy: Callable[[], bool]) -> None:
    """Once nothing moves (every input read, no output for STALL seconds, no partner call
    in flight) and the group has committed all it reads, with no transaction open and the
    same topic ends STALL seconds later, ``tally.settled`` holds the output topics' ends:
    an input still without an output then is lost, not late."""
    seen: tuple[float, dict[tuple[str, int], int]] | None = None  # when and what was first seen settled
    while tally.settled is None:
        await asyncio.sleep(1.0)  # polling: Kafka does not announce commits
        if len(tally.inputs) < expected or busy() or time.monotonic() - tally.last_output < STALL:
            seen = None
            continue
        with contextlib.suppress(TimeoutError, KafkaError, OSError):  # the broker may be restarting
            if not await all_committed(run):
                seen = None
                continue
            ends = await end_offsets(run.kafka, run.topics, stable=False)
            if seen is None or seen[1] != ends:
                seen = (time.monotonic(), ends)
            elif time.monotonic() - seen[0] >= STALL:
                tally.settled = {where: end for where, end in ends.items() if where[0] not in run.consumed}


async def all_committed(run: Run) -> bool:
    """Whether no transaction is open on the run's topics (each one's last stable offset is
    its high watermark) and the group has committed past every record it reads. A topic
    written in transactions (the retry tiers under exactly-once) ends with a commit marker
    that the group's offset (last record + 1) stays before: the records between are
    counted, not the offsets."""
    committed = await committed_offsets(run.kafka, run.prefix)
    stable = await end_offsets(run.kafka, run.topics)
    if stable != await end_offsets(run.kafka, run.topics, stable=False):
        return False  # a transaction still open: its outputs may yet be committed
    behind = {
        where: (committed.get(where, 0), end)
        for where, end in stable.items()
        if where[0] in run.consumed and committed.get(where, 0) < end
    }
    return not any((await count_between(run.kafka, behind)).values())


def output_gap(tally: Tally, since: float) -> float | None:
    """Seconds from ``since`` (time.time()) to the first output written after it, by its
    Kafka timestamp (None: none read yet)."""
    first = min((stamp for stamp in tally.stamps if stamp >= since), default=None)
    return None if first is None else round(first - since, 1)


async def time_to_output(tally: Tally, since: float, timeout: float, what: str) -> float:
    """``output_gap`` once the run has read an output written after ``since``."""
    seen: list[float] = []
    cursor = 0

    def written() -> bool:
        nonlocal cursor
        seen.extend(stamp for stamp in tally.stamps[cursor:] if stamp >= since)
        cursor = len(tally.stamps)
        return bool(seen)

    await wait_for(written, timeout, what)
    return round(min(seen) - since, 1)
