"""The output writer against a producer that keeps what it is sent: outputs go in record
batches per partition, a key lands where the Java client would put it, order holds within
a partition, and only the outputs of a refused batch are sent again."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, NotLeaderForPartitionError, UnknownTopicOrPartitionError
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from agents.output import OutputWriter
from agents.partitioner import partition_for
from streams.metrics import Metrics
from streams.pipeline import Destination, Output

TOPICS = {Destination.ENRICHED: "out.enriched", Destination.ERRORS: "out.errors"}
PARTITIONS = {"out.enriched": {0, 1, 2}, "out.errors": {0, 1}}


class Broker:
    """Acknowledges batches, except the ones ``refuse`` picks (once each)."""

    def __init__(self, batch_bytes: int = 16384) -> None:
        self.batch_bytes = batch_bytes
        self.log: dict[tuple[str, int], list[bytes]] = defaultdict(list)
        self.batches = 0
        self.refuse: set[int] = set()  # batch numbers whose future fails
        self.raise_on: set[int] = set()  # batch numbers whose send_batch raises
        self.unknown_once: set[str] = set()  # topics whose metadata fails the first time
        self.metadata_asks = 0

    async def partitions_for(self, topic: str) -> set[int]:
        self.metadata_asks += 1
        if topic in self.unknown_once:
            self.unknown_once.discard(topic)
            raise UnknownTopicOrPartitionError()
        return PARTITIONS[topic]

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_bytes, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future[Any]:
        self.batches += 1
        if self.batches in self.raise_on:
            raise KafkaTimeoutError()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.batches in self.refuse:
            future.set_exception(NotLeaderForPartitionError())
        else:
            batch.close()
            self.log[topic, partition].extend(record.value for record in DefaultRecordBatch(batch._build()))
            future.set_result(None)
        return future


def outputs(count: int, destination: Destination = Destination.ENRICHED) -> list[Output]:
    return [
        Output(destination, f"lead-{n}".encode(), f"{n:04d}".encode() * 8, "success") for n in range(count)
    ]


def java_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def writer(broker: Broker) -> OutputWriter:
    return OutputWriter(broker, TOPICS, "flow", Metrics(CollectorRegistry()), backoff=lambda attempt: 0)


async def test_each_output_is_written_once_to_its_keys_partition_in_order() -> None:
    broker = Broker(batch_bytes=300)  # a few records per batch: a partition's outputs span batches
    sent = outputs(40) + outputs(10, Destination.ERRORS)
    await writer(broker).write_all(sent)
    assert broker.batches > 5
    for output in sent:
        topic = TOPICS[output.destination]
        partition = java_partition(output.key, len(PARTITIONS[topic]))
        assert broker.log[topic, partition].count(output.value) == 1
    for (topic, _), values in broker.log.items():
        expected = [o.value for o in sent if TOPICS[o.destination] == topic and o.value in values]
        assert values == expected  # the order they were given in


@pytest.mark.parametrize("fault", ["refuse", "raise_on"])
async def test_only_a_failed_batchs_outputs_are_sent_again(fault: str) -> None:
    broker = Broker(batch_bytes=300)
    getattr(broker, fault).add(2)
    sent = outputs(30)
    await writer(broker).write_all(sent)
    written = [value for values in broker.log.values() for value in values]
    assert sorted(written) == sorted(o.value for o in sent)  # nothing lost, nothing twice


async def test_a_topic_without_metadata_is_asked_once_per_write_and_its_outputs_sent_again() -> None:
    broker = Broker()
    broker.unknown_once.add("out.errors")
    sent = outputs(20) + outputs(20, Destination.ERRORS)
    await writer(broker).write_all(sent)
    assert broker.metadata_asks == 2 + 1  # both topics, then the errors topic again
    assert sum(len(values) for values in broker.log.values()) == 40


@given(key=st.binary(max_size=64), count=st.integers(min_value=1, max_value=200))
def test_a_key_goes_where_aiokafka_and_the_java_client_put_it(key: bytes, count: int) -> None:
    partitions = list(range(count))
    assert partition_for(key, partitions) == DefaultPartitioner()(key, partitions, partitions)
