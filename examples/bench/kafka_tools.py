"""Kafka for the bench: fast and paced publishing, counting outputs by end offsets,
the first/last output timestamps, and reading records back for their timestamps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.kafka_io import Record, collect, partition_counts, publish

Message = tuple[bytes, bytes]  # key, value


async def publish_fast(
    bootstrap: str, topic: str, messages: Iterable[Message], on_sent: Callable[[int], None] | None = None
) -> int:
    """Produce as fast as the client can batch; returns when every record is acknowledged."""
    return await publish(bootstrap, topic, messages, on_sent, chunk=10_000, acks=1, linger_ms=20,
                         max_batch_size=1 << 20, max_request_size=8 << 20)  # fmt: skip


async def create_topics(bootstrap: str, names: list[str], partitions: int, max_message_bytes: int) -> None:
    """New topics whose records may be up to ``max_message_bytes`` (Kafka's default is 1 MiB)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        config = {"max.message.bytes": str(max_message_bytes)}
        await admin.create_topics([NewTopic(n, partitions, 1, topic_configs=config) for n in names])
    finally:
        await admin.close()


async def publish_large(bootstrap: str, topic: str, messages: Iterable[Message]) -> int:
    """Produce messages of several MiB each (one record batch each); returns once acknowledged."""
    return await publish(bootstrap, topic, messages, chunk=8, acks=1, max_request_size=16 << 20)


async def publish_paced(
    bootstrap: str,
    topic: str,
    messages: Iterator[Message],
    rate: float,
    seconds: float,
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Produce at a steady ``rate`` per second for ``seconds`` (no linger: a record's
    CreateTime is close to the moment it leaves); returns how many were sent."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
    await producer.start()
    sent = 0
    try:
        pending: list[asyncio.Future[object]] = []
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate) - sent
            for _ in range(due):
                key, value = next(messages)
                pending.append(await producer.send(topic, value, key=key))
            sent += max(due, 0)
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
            if on_sent:
                on_sent(sent)
            await asyncio.sleep(0.005)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


class OutputCounter:
    """Counts the records on some topics by their end offsets (one long-lived client)."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.partitions: list[TopicPartition] = []
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)

    async def __aenter__(self) -> OutputCounter:
        counts = await partition_counts(self.bootstrap, self.topics)
        self.partitions = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def ends(self) -> dict[TopicPartition, int]:
        return dict(await self.consumer.end_offsets(self.partitions))

    async def count(self) -> int:
        return sum((await self.ends()).values())

    async def wait_for(
        self,
        expected: int,
        deadline: float,
        alive: Callable[[], bool],
        on_count: Callable[[int], None] | None = None,
        what: str = "outputs",
    ) -> int:
        """Poll until ``expected`` records are there; RuntimeError if the processor dies
        or ``deadline`` seconds pass."""
        limit = time.monotonic() + deadline
        while (count := await self.count()) < expected:
            if on_count:
                on_count(count)
            if not alive():
                raise RuntimeError(f"the processor exited with {count}/{expected} {what}")
            if time.monotonic() > limit:
                raise TimeoutError(f"only {count}/{expected} {what} after {deadline:.0f}s")
            await asyncio.sleep(0.25)
        if on_count:
            on_count(count)
        return count

    async def edge_timestamps(self) -> tuple[int, int]:
        """CreateTime (ms) of the first and of the last record over all partitions:
        the first and last record of each partition are read, nothing else."""
        ends = await self.ends()
        first, last = [], []
        for tp, end in ends.items():
            if end == 0:
                continue
            self.consumer.assign([tp])
            for offset, into in ((0, first), (end - 1, last)):
                self.consumer.seek(tp, offset)
                record = await asyncio.wait_for(self.consumer.getone(tp), 30)
                into.append(record.timestamp)
        self.consumer.assign([])
        if not first:
            raise RuntimeError(f"no records on {self.topics}")
        return min(first), max(last)


async def read_all(bootstrap: str, topics: list[str], expected: int, timeout: float = 120) -> list[Record]:
    """Every record of ``topics`` (``expected`` in all, known to be there)."""
    return await collect(bootstrap, topics, lambda records: len(records) >= expected, timeout)
