"""Kafka for the bench: fast and paced publishing, counting the committed outputs (by end
offsets while they are short of the count awaited, then by reading them), the first/last
output timestamps, and reading records back for their timestamps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.kafka_io import READ_COMMITTED, Record, collect, partition_counts, publish

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
    """Counts the committed records on some topics (one long-lived read_committed client).

    End offsets only bound the count from above: under exactly-once, transaction markers
    and aborted records take offsets too. While that bound is below the count waited for,
    nothing is read, so the processor under measurement keeps the cores; from there on
    each record is read once, counted, and the first and last timestamps kept."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.partitions: list[TopicPartition] = []
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=READ_COMMITTED,
        )
        self.counted = 0
        self.read_to: dict[TopicPartition, int] = {}  # the consumer's positions: counted before
        self.first_ms: int | None = None
        self.last_ms: int | None = None

    async def __aenter__(self) -> OutputCounter:
        counts = await partition_counts(self.bootstrap, self.topics)
        self.partitions = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
        await self.consumer.start()
        self.consumer.assign(self.partitions)
        self.read_to = dict(await self.consumer.beginning_offsets(self.partitions))
        for tp, offset in self.read_to.items():
            self.consumer.seek(tp, offset)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def ends(self) -> dict[TopicPartition, int]:
        """The last stable offsets: a committed read gets that far now."""
        return dict(await self.consumer.end_offsets(self.partitions))

    async def bound(self) -> int:
        """At least the committed records there now: those counted and the offsets after."""
        ends = await self.ends()
        return self.counted + sum(ends[tp] - self.read_to[tp] for tp in self.partitions)

    async def count(self) -> int:
        """The committed records there now (the ones not counted yet are read)."""
        ends = await self.ends()
        todo = {tp for tp in self.partitions if self.read_to[tp] < ends[tp]}
        while todo:
            fetched = await self.consumer.getmany(*todo, timeout_ms=500, max_records=10_000)
            for records in fetched.values():
                self.counted += len(records)
                for record in records:
                    self.first_ms = min(self.first_ms or record.timestamp, record.timestamp)
                    self.last_ms = max(self.last_ms or record.timestamp, record.timestamp)
            # By position: the offsets markers and aborted records take show no record.
            for tp in list(todo):
                self.read_to[tp] = await self.consumer.position(tp)
                if self.read_to[tp] >= ends[tp]:
                    todo.discard(tp)
        return self.counted

    async def wait_for(
        self,
        expected: int,
        deadline: float,
        alive: Callable[[], bool],
        on_count: Callable[[int], None] | None = None,
        what: str = "outputs",
    ) -> int:
        """Poll until ``expected`` records are there; RuntimeError if the processor dies
        or ``deadline`` seconds pass. (Progress counts offsets until they reach ``expected``.)"""
        limit = time.monotonic() + deadline
        while (count := await self.bound()) < expected or (count := await self.count()) < expected:
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
        """CreateTime (ms) of the first and of the last committed record over all partitions."""
        await self.count()
        if self.first_ms is None or self.last_ms is None:
            raise RuntimeError(f"no records on {self.topics}")
        return self.first_ms, self.last_ms


async def read_all(bootstrap: str, topics: list[str], expected: int, timeout: float = 120) -> list[Record]:
    """Every record of ``topics`` (``expected`` in all, known to be there)."""
    return await collect(bootstrap, topics, lambda records: len(records) >= expected, timeout)
