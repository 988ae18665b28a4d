"""The worker's outputs as a `read_committed` reader sees them, for P1/P2 under both
guarantees (issue 18).

Why not OutputCounter (end offsets): under exactly-once, transaction markers take offsets,
so end offsets overcount the records. Instead:
- the end of a run: the group's committed offsets on the input reach the input's end
  offsets (the input is written without transactions, so those are its record counts; under
  exactly-once an input offset commits in the same transaction as its outputs);
- when each output became visible: every POLL seconds the output partitions' end offsets
  from a read_committed client (the last stable offset: it moves when a transaction commits;
  without transactions it is the high watermark), so an output at offset o became visible
  at the first poll that saw the end above o;
- afterwards every output is read with read_committed: the count (each lead exactly once),
  CreateTime for leads/s, and ``received_at`` (when the worker took the lead) for the
  latency a lead sees, worker receipt to visible to a read_committed consumer (under load:
  it holds the wait for a free slot in the worker, the partner call, in-order release and the
  commit); CreateTime to visible is the commit's part alone.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from stats import percentiles_ms

POLL = 0.05  # s between end-offset polls: the resolution of a visibility time (~25 ms mean error)
COMMIT_POLL = 0.25  # s between reads of the group's committed offsets


@dataclass
class Visible:
    """One output partition's end offsets over time: (time.time(), end) when it moved."""

    times: list[float] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)

    def saw(self, moment: float, end: int) -> None:
        if not self.ends or end > self.ends[-1]:
            self.times.append(moment)
            self.ends.append(end)

    def at(self, offset: int) -> float | None:
        """When the record at ``offset`` became visible (None: never seen)."""
        index = bisect.bisect_right(self.ends, offset)
        return self.times[index] if index < len(self.times) else None


@dataclass
class Outputs:
    """What the committed read found after a run."""

    records: int  # committed output records
    leads: int  # distinct lead ids among them
    first_ms: int  # CreateTime of the first and the last
    last_ms: int
    first_visible: float  # time.time() the first and the last became visible
    last_visible: float
    latency_ms: list[float]  # per output: visible - the worker's received_at
    wait_ms: list[float]  # per output: visible - its CreateTime (the wait for the commit)

    def summary(self, expected: int) -> dict[str, Any]:
        span = max((self.last_ms - self.first_ms) / 1000, 0.001)
        visible_span = max(self.last_visible - self.first_visible, 0.001)
        return {"leads_s": round(expected / span, 1), "visible_leads_s": round(expected / visible_span, 1),
                "received_to_visible_ms": percentiles_ms(self.latency_ms),
                "written_to_visible_ms": percentiles_ms(self.wait_ms)}  # fmt: skip


class CommittedOutputs:
    """Polls the outputs' last stable offsets and the group's commits while a worker runs."""

    def __init__(
        self, bootstrap: str, group: str, input_topic: str, outputs: list[str], partitions: int
    ) -> None:
        self.bootstrap, self.group, self.input_topic = bootstrap, group, input_topic
        self.outputs = [TopicPartition(t, p) for t in outputs for p in range(partitions)]
        self.inputs = [TopicPartition(input_topic, p) for p in range(partitions)]
        self.visible = {tp: Visible() for tp in self.outputs}
        self.ends = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
        )
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self.task: asyncio.Future[None] | None = None

    async def __aenter__(self) -> CommittedOutputs:
        await self.ends.start()
        await self.admin.start()
        self.task = asyncio.ensure_future(self._poll())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None:
            self.task.cancel()
        await self.ends.stop()
        await self.admin.close()

    async def _poll(self) -> None:
        while True:
            ends = await self.ends.end_offsets(self.outputs)
            moment = time.time()
            for tp, end in ends.items():
                self.visible[tp].saw(moment, end)
            await asyncio.sleep(POLL)  # a sampling period, not a synchronisation

    def visible_count(self) -> int:
        """Output offsets visible so far (records plus markers): for the progress bar only."""
        return sum(v.ends[-1] for v in self.visible.values() if v.ends)

    async def wait_committed(
        self, deadline: float, alive: Callable[[], bool], on_count: Callable[[int], None] | None = None
    ) -> None:
        """Until the group has committed the whole input; RuntimeError if the worker exits,
        TimeoutError after ``deadline`` seconds."""
        ends = await self.ends.end_offsets(self.inputs)
        limit = time.monotonic() + deadline
        while True:
            committed: dict[TopicPartition, int] = {}
            with contextlib.suppress(KafkaError):  # e.g. no coordinator yet for a new group
                found = await self.admin.list_consumer_group_offsets(self.group, partitions=self.inputs)
                committed = {tp: meta.offset for tp, meta in found.items()}
            if all(committed.get(tp, -1) >= end for tp, end in ends.items()):
                return
            if on_count:
                on_count(self.visible_count())
            if not alive():
                raise RuntimeError(f"the worker exited; committed {committed} of {ends}")
            if time.monotonic() > limit:
                raise TimeoutError(f"input not committed after {deadline:.0f}s: {committed} of {ends}")
            await asyncio.sleep(COMMIT_POLL)  # polling: Kafka does not announce commits

    async def read(self, expected: int, timeout: float = 120) -> Outputs:
        """Every committed output (the worker is done): each lead must be there exactly once."""
        await asyncio.sleep(2 * POLL)  # the poller's sample of the final ends
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, isolation_level="read_committed"
        )
        await consumer.start()
        try:
            ends = await consumer.end_offsets(self.outputs)
            consumer.assign(self.outputs)
            await consumer.seek_to_beginning(*self.outputs)
            ids: Counter[str] = Counter()
            stamps: list[int] = []
            latency: list[float] = []
            wait: list[float] = []
            seen: list[float] = []
            limit = time.monotonic() + timeout
            while any([await consumer.position(tp) < end for tp, end in ends.items()]):
                if time.monotonic() > limit:
                    raise TimeoutError(f"reading the committed outputs: {len(stamps)} in {timeout:.0f}s")
                for tp, messages in (await consumer.getmany(timeout_ms=200, max_records=10_000)).items():
                    for message in messages:
                        event = orjson.loads(message.value or b"{}")
                        ids[event["id"]] += 1
                        stamps.append(message.timestamp)
                        visible = self.visible[tp].at(message.offset)
                        if visible is None:
                            raise RuntimeError(f"{tp} offset {message.offset} read but never seen visible")
                        seen.append(visible)
                        received = datetime.fromisoformat(event["received_at"]).timestamp()
                        latency.append((visible - received) * 1000)
                        wait.append(visible * 1000 - message.timestamp)
        finally:
            await consumer.stop()
        twice = sum(count - 1 for count in ids.values() if count > 1)
        if len(ids) != expected or twice:
            raise RuntimeError(f"{len(ids)} of {expected} leads in the committed outputs, {twice} twice")
        return Outputs(len(stamps), len(ids), min(stamps), max(stamps), min(seen), max(seen), latency, wait)
