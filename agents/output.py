"""Write outputs to Kafka and wait for the broker's acknowledgement of each one."""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, Protocol

from agents.partitioner import partition_for
from agents.write_gate import WriteGate
from streams.metrics import Metrics
from streams.pipeline import Destination, Output

log = logging.getLogger(__name__)
EXIT_OUTPUT_FAILED = 70


class RecordBatch(Protocol):
    """A Kafka record batch being built (what aiokafka's ``create_batch`` returns)."""

    def append(self, *, timestamp: int | None, key: bytes | None, value: bytes | None,
               headers: Any) -> object | None:  # fmt: skip
        """The record's metadata, or None when the record batch is full."""


class RecordBatchProducer(Protocol):
    """The part of ``AIOKafkaProducer`` the writer uses: record batches built here, one per
    partition (agents.faust_seam.FaustRecordBatches is Faust's producer as one)."""

    async def partitions_for(self, topic: str) -> set[int]: ...

    def create_batch(self) -> Any: ...  # a RecordBatch (Any: aiokafka's class has no stubs)

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]: ...


async def exit_uncommitted(why: str) -> NoReturn:
    log.critical("%s; exiting without committing their input", why)
    os._exit(EXIT_OUTPUT_FAILED)


class OutputWriter:
    """Sends outputs and returns only when Kafka acknowledged all of them.

    If the broker keeps refusing, the process exits *without* acking the input
    events (Faust would ack them if we raised), so they are re-read on restart.
    Under exactly-once (a transactional producer) a refused write is not sent again in the
    same transaction: ``give_up`` aborts it and exits (agents.transactions).
    """

    def __init__(
        self,
        producer: RecordBatchProducer,
        topics: dict[Destination, str],
        flow: str,
        metrics: Metrics | None,
        attempts: int = 5,
        backoff: Callable[[int], float] = lambda attempt: min(2**attempt, 30),
        gate: WriteGate | None = None,
        give_up: Callable[[str], Awaitable[NoReturn]] = exit_uncommitted,
    ) -> None:
        self.producer = producer
        self.gate = gate or WriteGate()  # a commit waits for the writes in flight (exactly-once)
        self.give_up = give_up
        self.topics = topics
        self.flow = flow
        self.metrics = metrics
        self.attempts = attempts
        self.backoff = backoff  # seconds before the given attempt's failures are sent again

    async def write_all(self, outputs: Sequence[Output], then: Callable[[], None] | None = None) -> None:
        """``outputs`` and the records written alongside each (a lead's notifications); once
        Kafka acknowledged all, ``then`` (which acks their inputs) runs before any commit can."""
        async with self.gate.writing():
            await self._write(outputs)
            if then is not None:
                then()

    async def _write(self, outputs: Sequence[Output]) -> None:
        pending = [record for output in outputs for record in (output, *output.alongside)]
        for attempt in range(1, self.attempts + 1):
            results = await self._send_all(pending)
            failed = [o for o, r in zip(pending, results, strict=True) if r is not None]
            if self.metrics is not None:  # one increment per topic and write, not per lead
                acked = zip(pending, results, strict=True)
                written = Counter(self.topic_of(o) for o, r in acked if r is None)
                for topic, count in written.items():
                    self.metrics.leads_written.labels(self.flow, topic).inc(count)
            if not failed:
                return
            errors = {repr(r) for r in results if r is not None}
            log.warning("%d outputs not acknowledged (attempt %d): %s", len(failed), attempt, errors)
            pending = failed
            if attempt < self.attempts:
                await asyncio.sleep(self.backoff(attempt))
        await self.give_up(f"Kafka did not acknowledge {len(pending)} outputs")

    def topic_of(self, output: Output) -> str:
        return output.topic or self.topics[output.destination]

    async def _send_all(self, outputs: Sequence[Output]) -> list[BaseException | None]:
        """Each output's fate: None once Kafka acknowledged it, else the error. Outputs are
        appended to one record batch per partition (in order) and each record batch is sent
        whole: no coroutine and no future per output, as ``producer.send`` would make."""
        results: list[BaseException | None] = [None] * len(outputs)
        by_partition: dict[tuple[str, int], list[int]] = defaultdict(list)
        partitions: dict[str, list[int] | BaseException] = {}  # asked once per topic and write
        for index, output in enumerate(outputs):
            topic = self.topic_of(output)
            if topic not in partitions:
                try:
                    partitions[topic] = sorted(await self.producer.partitions_for(topic))
                except Exception as exc:  # the topic's outputs are retried like unacknowledged ones
                    partitions[topic] = exc
            known = partitions[topic]
            if isinstance(known, BaseException):
                results[index] = known
                continue
            by_partition[topic, partition_for(output.key, known)].append(index)  # the Java client's choice
        sent: list[tuple[list[int], Any]] = []
        for (topic, partition), indexes in by_partition.items():
            for members, records in self._record_batches(outputs, indexes):
                try:
                    delivery = await self.producer.send_batch(records, topic, partition=partition)
                    sent.append((members, delivery))
                except Exception as exc:
                    sent.append((members, exc))
        acknowledgements = [item for _, item in sent if not isinstance(item, BaseException)]
        answers = iter(await asyncio.gather(*acknowledgements, return_exceptions=True))
        for members, item in sent:
            outcome = item if isinstance(item, BaseException) else next(answers)
            if isinstance(outcome, BaseException):
                for index in members:
                    results[index] = outcome
        return results

    def _record_batches(
        self, outputs: Sequence[Output], indexes: list[int]
    ) -> list[tuple[list[int], RecordBatch]]:
        """The outputs at ``indexes``, in order, in as few record batches as their size allows."""
        record_batches: list[tuple[list[int], RecordBatch]] = []
        members: list[int] = []
        records: RecordBatch = self.producer.create_batch()
        for index in indexes:
            output = outputs[index]
            record = {"timestamp": None, "key": output.key, "value": output.value, "headers": output.headers}
            if records.append(**record) is None:  # full: a new record batch always takes its first record
                record_batches.append((members, records))
                members, records = [], self.producer.create_batch()
                records.append(**record)
            members.append(index)
        if members:
            record_batches.append((members, records))
        return record_batches
