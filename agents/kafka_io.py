"""Small aiokafka helpers for the CLI, the demo and the tests: topics, publish, collect."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError


async def ensure_topics(bootstrap: str, names: Iterable[str], partitions: int = 1) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker won the race
                await admin.create_topics(
                    [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in missing]
                )
        return missing
    finally:
        await admin.close()


async def publish(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes]],
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Produce (key, value) pairs and wait until all are acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    count = 0
    try:
        futures = []
        for key, value in messages:
            futures.append(await producer.send(topic, value, key=key))
            count += 1
            if len(futures) >= 1000:
                await asyncio.gather(*futures)
                futures.clear()
                if on_sent:
                    on_sent(count)
        await asyncio.gather(*futures)
        if on_sent:
            on_sent(count)
    finally:
        await producer.stop()
    return count


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int


async def collect(
    bootstrap: str,
    topics: list[str],
    until: Callable[[list[Record]], bool],
    timeout: float,
    on_record: Callable[[Record], None] | None = None,
) -> list[Record]:
    """Read the topics from the beginning (no consumer group) until ``until(records)``
    holds or ``timeout`` seconds pass; returns what was read either way."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[Record] = []
    try:
        deadline = time.monotonic() + timeout
        partitions: list[TopicPartition] = []
        for topic in topics:
            while not (found := consumer.partitions_for_topic(topic)) and time.monotonic() < deadline:
                await consumer.topics()  # refresh metadata: the topic may not exist yet
                await asyncio.sleep(0.2)
            partitions.extend(TopicPartition(topic, p) for p in sorted(found or ()))
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        while not until(records) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp_records in batch.values():
                for msg in tp_records:
                    record = Record(
                        msg.topic, msg.partition, msg.offset, msg.key, msg.value or b"", msg.timestamp
                    )
                    records.append(record)
                    if on_record:
                        on_record(record)
    finally:
        await consumer.stop()
    return records
