"""The aiokafka clients inside Faust's: its producer (the outputs' record batches, and its
connections for /ready) and the consumer thread's fetch times (/ready).

Private names used: Faust's ``Producer._ensure_producer``, ``Consumer._thread`` and
``AIOKafkaConsumerThread._ensure_consumer``; aiokafka's ``AIOKafkaClient._conns`` and the
record batch class in ``aiokafka.producer.message_accumulator`` (what ``create_batch``
returns). tests/test_faust_seam.py holds a contract test for each.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder
from faust.types import ProducerT


def aiokafka_producer(producer: ProducerT) -> AIOKafkaProducer:
    """The aiokafka producer inside Faust's (started and stopped with the app)."""
    return producer._ensure_producer()  # type: ignore[attr-defined,no-any-return]


def producer_connected(producer: ProducerT) -> bool:
    """Whether the producer's client holds a live connection to a broker (aiokafka drops a
    connection the broker closed, and the readiness probe's metadata request opens one)."""
    try:
        connections = list(aiokafka_producer(producer).client._conns.values())
    except Exception:  # not started yet, or stopped
        return False
    return any(connection.connected() for connection in connections)


def last_fetch_time(consumer: faust.types.ConsumerT) -> float | None:
    """Unix time of the newest fetch answer over the consumer's assigned partitions
    (aiokafka's ``last_poll_timestamp``: empty answers count), None before the first.
    Read from the main thread while the aiokafka consumer runs in Faust's consumer
    thread: single reads of plain values, and a partition revoked meanwhile is skipped."""
    try:
        kafka = consumer._thread._ensure_consumer()  # type: ignore[attr-defined]
        stamps = [kafka.last_poll_timestamp(tp) for tp in kafka.assignment()]
    except Exception:  # not started, stopping, or the assignment changed while reading
        return None
    known = [stamp for stamp in stamps if stamp is not None]
    return max(known) / 1000 if known else None


class FaustRecordBatches:
    """Faust's own aiokafka producer (started and stopped with the app) as the output
    writer's ``RecordBatchProducer`` (agents.output): Kafka record batches built by the
    writer, one per partition and write, sent whole."""

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
