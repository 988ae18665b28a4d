"""Write outputs to Kafka and wait for the broker's acknowledgement of each one."""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder
from faust.types import ProducerT

from agents.faust_seam import aiokafka_producer
from agents.partitioner import partition_for
from streams.metrics import Metrics
from streams.pipeline import Destination, Output

log = logging.getLogger(__name__)
EXIT_OUTPUT_FAILED = 70


class BatchProducer(Protocol):
    """The part of ``AIOKafkaProducer`` the writer uses: batches built here, one per partition."""

    async def partitions_for(self, topic: str) -> set[int]: ...

    def create_batch(self) -> BatchBuilder: ...

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future[Any]: ...


class OutputWriter:
    """Sends a batch of outputs and returns only when Kafka acknowledged all of them.

    If the broker keeps refusing, the process exits *without* acking the input
    events (Faust would ack them if we raised), so they are re-read on restart.
    """

    def __init__(
        self,
        producer: BatchProducer,
        topics: dict[Destination, str],
        flow: str,
        metrics: Metrics | None,
        attempts: int = 5,
        backoff: Callable[[int], float] = lambda attempt: min(2**attempt, 30),
    ) -> None:
        self.producer = producer
        self.topics = topics
        self.flow = flow
        self.metrics = metrics
        self.attempts = attempts
        self.backoff = backoff  # seconds before the given attempt's failures are sent again

    async def write_all(self, outputs: Sequence[Output]) -> None:
        pending = list(outputs)
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
            await asyncio.sleep(self.backoff(attempt))
        log.critical(
            "Kafka did not acknowledge %d outputs; exiting without committing their input", len(pending)
        )
        os._exit(EXIT_OUTPUT_FAILED)

    def topic_of(self, output: Output) -> str:
        return output.topic or self.topics[output.destination]

    async def _send_all(self, outputs: Sequence[Output]) -> list[BaseException | None]:
        """Each output's fate: None once Kafka acknowledged it, else the error. Outputs are
        appended to one record batch per partition (in order) and each batch is sent as a
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
            for members, batch in self._batches(outputs, indexes):
                try:
                    sent.append((members, await self.producer.send_batch(batch, topic, partition=partition)))
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

    def _batches(self, outputs: Sequence[Output], indexes: list[int]) -> list[tuple[list[int], BatchBuilder]]:
        """The outputs at ``indexes``, in order, in as few record batches as their size allows."""
        batches: list[tuple[list[int], BatchBuilder]] = []
        members: list[int] = []
        batch = self.producer.create_batch()
        for index in indexes:
            output = outputs[index]
            record = {"timestamp": None, "key": output.key, "value": output.value, "headers": output.headers}
            if batch.append(**record) is None:  # full: a new batch always takes its first record
                batches.append((members, batch))
                members, batch = [], self.producer.create_batch()
                batch.append(**record)
            members.append(index)
        if members:
            batches.append((members, batch))
        return batches


class FaustProducerBatches:
    """Faust's own aiokafka producer (started and stopped with the app) as a ``BatchProducer``."""

    def __init__(self, producer: ProducerT) -> None:
        self.faust_producer = producer

    def _producer(self) -> AIOKafkaProducer:
        return aiokafka_producer(self.faust_producer)

    async def partitions_for(self, topic: str) -> set[int]:
        return await self._producer().partitions_for(topic)  # type: ignore[no-any-return]

    def create_batch(self) -> BatchBuilder:
        return self._producer().create_batch()

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future[Any]:
        return await self._producer().send_batch(batch, topic, partition=partition)  # type: ignore[no-any-return]
