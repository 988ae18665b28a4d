"""Small aiokafka helpers for the CLI, the demo and the tests: topics, publish, collect."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

from agents.kafka_connection import KafkaConnection
from agents.topic_lookup import existing_partitions

Kafka = KafkaConnection | str  # a connection, or a bare PLAINTEXT bootstrap address

# Every reader of ours reads committed records only. Under exactly-once the outputs are
# written in transactions, and the records of an aborted transaction (a crashed worker's
# outputs, processed again by the next owner) would show as duplicates; a non-transactional
# topic reads the same either way. Transaction markers still take offsets: reads to an end
# compare the consumer's position with it, never the last record's offset + 1.
READ_COMMITTED = "read_committed"


@contextlib.asynccontextmanager
async def admin_client(kafka: Kafka) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client, closed afterwards."""
    admin = AIOKafkaAdminClient(**KafkaConnection.of(kafka).client_options())
    try:  # (a start that fails still closes: no "Unclosed" warnings at exit)
        await admin.start()
        yield admin
    finally:
        await admin.close()


async def ensure_topics(
    kafka: Kafka,
    names: Iterable[str],
    partitions: int = 1,
    replication_factor: int | None = None,
    configs: dict[str, str] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created. Without a
    ``replication_factor`` the broker's ``default.replication.factor`` is used."""
    async with admin_client(kafka) as admin:
        existing = set(await admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        if missing:
            replicas = replication_factor or await default_replication_factor(admin)
            topics = [NewTopic(n, partitions, replicas, topic_configs=configs or {}) for n in missing]
            response = await admin.create_topics(topics)
            # aiokafka returns the broker's answer per topic without raising: a refused
            # config or replication factor would otherwise pass unnoticed.
            refused = [
                (name, code, message)
                for name, code, message in response.topic_errors
                if code and code != TopicAlreadyExistsError.errno
            ]  # (another worker won the race)
            if refused:
                name, code, message = refused[0]
                raise for_code(code)(f"topic {name}: {message}")
        return missing


async def broker_replication_factor(kafka: Kafka) -> int:
    """The broker's default.replication.factor."""
    async with admin_client(kafka) as admin:
        return await default_replication_factor(admin)


async def default_replication_factor(admin: AIOKafkaAdminClient) -> int:
    """The broker's default.replication.factor (what a topic created without one gets)."""
    cluster = await admin.describe_cluster()
    broker = str(
        cluster["controller_id"]
        if cluster.get("controller_id", -1) >= 0
        else cluster["brokers"][0]["node_id"]
    )
    wanted = ConfigResource(ConfigResourceType.BROKER, broker, {"default.replication.factor": None})
    (response,) = await admin.describe_configs([wanted])
    for resource in response.resources:  # (error_code, error_message, type, name, entries)
        if resource[0]:
            raise for_code(resource[0])(f"reading default.replication.factor: {resource[1] or 'refused'}")
        for entry in resource[4]:  # (name, value, read_only, ...) per config
            if entry[0] == "default.replication.factor" and entry[1]:
                return int(entry[1])
    return 1


async def publish(
    kafka: Kafka,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes]],
    on_sent: Callable[[int], None] | None = None,
    chunk: int = 1000,
    **producer_options: Any,
) -> int:
    """Produce (key, value) pairs and wait until all are acknowledged (``on_sent`` after
    every ``chunk``); ``producer_options`` override the producer's settings."""
    options: dict[str, Any] = {"acks": "all", "linger_ms": 5, **producer_options}
    producer = AIOKafkaProducer(**KafkaConnection.of(kafka).client_options(), **options)
    count = 0
    try:  # (a start that fails still stops: no "Unclosed AIOKafkaProducer" at exit)
        await producer.start()
        futures = []
        for key, value in messages:
            futures.append(await producer.send(topic, value, key=key))
            count += 1
            if len(futures) >= chunk:
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
    kafka: Kafka,
    topics: list[str],
    until: Callable[[list[Record]], bool],
    timeout: float,
    on_record: Callable[[Record], None] | None = None,
    start: dict[tuple[str, int], int] | None = None,
    positions: dict[tuple[str, int], int] | None = None,
) -> list[Record]:
    """Read the committed records of the topics (no consumer group) from the beginning, or
    from the offsets in ``start``, until ``until(records)`` holds or ``timeout`` seconds
    pass; returns what was read either way. ``positions``, if given, is kept up to date
    with each partition's next offset to read (past transaction markers and aborted
    records, which no record shows), before ``until`` is asked."""
    # No group: a subscription then gets every partition of the topics.
    consumer = AIOKafkaConsumer(
        *topics,
        **KafkaConnection.of(kafka).client_options(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level=READ_COMMITTED,
    )
    records: list[Record] = []
    try:  # (a start that fails still stops: no "Unclosed AIOKafkaConsumer" at exit)
        await consumer.start()
        deadline = time.monotonic() + timeout
        while {tp.topic for tp in consumer.assignment()} != set(topics) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # polling the assignment, bounded by the deadline
        for tp in consumer.assignment():
            if start and (tp.topic, tp.partition) in start:
                consumer.seek(tp, start[(tp.topic, tp.partition)])
        while not until(records) and time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp_records in fetched.values():
                for msg in tp_records:
                    if start and msg.offset < start.get((msg.topic, msg.partition), 0):
                        continue  # fetched before the seek took effect
                    record = Record(
                        msg.topic, msg.partition, msg.offset, msg.key, msg.value or b"", msg.timestamp
                    )
                    records.append(record)
                    if on_record:
                        on_record(record)
            if positions is not None:
                for tp in consumer.assignment():
                    positions[(tp.topic, tp.partition)] = await consumer.position(tp)
    finally:
        await consumer.stop()
    return records


async def end_offsets(kafka: Kafka, topics: list[str], stable: bool = True) -> dict[tuple[str, int], int]:
    """The end of every partition of the existing ``topics``: the last stable offset (what a
    committed read gets to: the first offset of a transaction still open, else the high
    watermark), or with ``stable=False`` the high watermark (the offset the next record
    gets; a committed read gets there once the transactions below it are decided)."""
    counts = await partition_counts(kafka, topics)
    partitions = [TopicPartition(topic, p) for topic, count in counts.items() for p in range(count)]
    isolation = READ_COMMITTED if stable else "read_uncommitted"
    consumer = AIOKafkaConsumer(
        **KafkaConnection.of(kafka).client_options(), enable_auto_commit=False, isolation_level=isolation
    )
    try:
        await consumer.start()
        offsets = await consumer.end_offsets(partitions) if partitions else {}
        return {(tp.topic, tp.partition): offset for tp, offset in offsets.items()}
    finally:
        await consumer.stop()


async def partition_counts(kafka: Kafka, topics: list[str]) -> dict[str, int]:
    """Partitions of each of ``topics`` that exists; asking creates none (agents.topic_lookup)."""
    async with admin_client(kafka) as admin:
        return await existing_partitions(admin, topics)


async def committed_offsets(kafka: Kafka, group: str) -> dict[tuple[str, int], int]:
    """The consumer group's committed offsets, by (topic, partition)."""
    async with admin_client(kafka) as admin:
        found = await admin.list_consumer_group_offsets(group)
    return {(tp.topic, tp.partition): meta.offset for tp, meta in found.items()}


async def partition_count(kafka: Kafka, topic: str) -> int | None:
    """Partitions of ``topic``, or None when it does not exist (yet)."""
    return (await partition_counts(kafka, [topic])).get(topic)
