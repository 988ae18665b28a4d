"""Exactly-once: the worker's outputs and the offsets of their inputs commit in one Kafka
transaction, through one transactional producer per worker (docs/exactly-once-design.md:
why one per worker, and why not Faust's ``processing_guarantee="exactly_once"``).

The output writer (agents.output) sends its record batches into the open transaction; the
consumer's commit (agents.faust_seam.consumer) holds the :class:`WriteGate`, so no write is
half done, and calls :meth:`TransactionalProducer.commit` with the acked offsets and the
group membership it had when it was assigned its partitions (KIP-447, the seam's
``GroupMember``): a worker that was replaced in a rebalance commits nothing.

Any error of a transaction ends the process, uncommitted (exit 70): the next owner reads the
inputs again from the last commit. Before exiting, the open transaction is aborted by starting
a producer with the same transactional id (Kafka aborts the predecessor's open transaction at
once): aiokafka's ``abort_transaction`` after an error never reaches the broker (measured,
docs/exactly-once-design.md §1), and an open transaction holds back every ``read_committed``
reader of its partitions until its timeout.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Mapping
from typing import Any, NoReturn

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from agents.faust_seam import GroupMember
from agents.kafka_connection import KafkaConnection
from agents.write_gate import WriteGate
from streams.metrics import Metrics

log = logging.getLogger(__name__)
_NONE = OffsetAndMetadata(-1, "")

EXIT_TRANSACTION_FAILED = 70  # as agents.output: exits uncommitted, the inputs are read again
TRANSACTION_TIMEOUT_MS = 30_000  # how long a dead worker's open transaction holds back readers
ABORT_WITHIN = 10.0  # seconds to abort an open transaction before exiting anyway
COMMIT_WITHIN = TRANSACTION_TIMEOUT_MS / 1000  # past it the broker aborts the transaction anyway
VISIBLE_WITHIN = 5.0  # seconds for a commit to be read back before a partition is handed over


def transactional_id(group_id: str, instance_id: str | None) -> str:
    """Stable with an instance id: a restarted worker aborts its predecessor's open
    transaction when it starts. Without one, a dead worker's transaction ends by timeout."""
    return f"{group_id}-{instance_id}" if instance_id else f"{group_id}-{uuid.uuid4().hex[:12]}"


class TransactionalProducer:
    """aiokafka's transactional producer as the output writer's ``RecordBatchProducer``,
    with a transaction always open between commits."""

    def __init__(self, kafka: KafkaConnection, transactional_id: str, max_batch_size: int,
                 metrics: Metrics | None = None, flow: str = "") -> None:  # fmt: skip
        self.kafka = kafka
        self.commit_seconds = metrics.transaction_commits.labels(flow) if metrics is not None else None
        self.transactional_id = transactional_id
        self.max_batch_size = max_batch_size
        self.gate = WriteGate()
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()
        self._aborting = False

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            **self.kafka.client_options(),
            transactional_id=self.transactional_id,
            transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
            max_batch_size=self.max_batch_size,
            acks="all",
        )

    async def start(self) -> AIOKafkaProducer:
        """Started once (its InitProducerId aborts what a predecessor with this id left open)."""
        if self._aborting:  # the process exits as soon as the transaction is aborted: write nothing
            await asyncio.Future()
        if self._producer is not None:
            return self._producer
        async with self._starting:
            if self._producer is None:
                producer = self._new_producer()
                await producer.start()
                await producer.begin_transaction()
                self._producer = producer
                log.info("exactly-once: transactional id %s", self.transactional_id)
        return self._producer

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            try:  # normally empty (the consumer's last commit came before); if not, nothing of it
                # may stay open and hold back read_committed readers until its timeout
                await asyncio.wait_for(producer.abort_transaction(), 2.0)
            except Exception as exc:
                log.warning("exactly-once: the open transaction was not aborted at the stop (%r)", exc)
            await producer.stop()

    # -- what the output writer uses ------------------------------------------------------

    async def partitions_for(self, topic: str) -> set[int]:
        return await (await self.start()).partitions_for(topic)  # type: ignore[no-any-return]

    def create_batch(self) -> Any:
        assert self._producer is not None, "partitions_for starts the producer"
        return self._producer.create_batch()

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
        return await (await self.start()).send_batch(batch, topic, partition=partition)  # type: ignore[no-any-return]

    # -- what the consumer's commit uses -----------------------------------------------------

    async def commit(self, offsets: Mapping[tuple[str, int], int], member: GroupMember) -> None:
        """Commit the open transaction with ``offsets`` (call it holding :attr:`gate`), then
        open the next. Any failure ends the process (see the module)."""
        producer = await self.start()
        started = time.perf_counter()
        try:
            # Bounded: aiokafka retries a coordinator that does not answer forever, while the
            # gate holds every write; past the transaction's timeout the broker aborts it anyway.
            await asyncio.wait_for(self._commit(producer, offsets, member), COMMIT_WITHIN)
        except TimeoutError:
            await self.abort_and_exit(f"the transaction's commit did not finish within {COMMIT_WITHIN:.0f}s")
        except Exception as exc:
            await self.abort_and_exit(f"the transaction's commit failed: {exc!r}")
        if self.commit_seconds is not None:
            self.commit_seconds.observe(time.perf_counter() - started)

    @staticmethod
    async def _commit(
        producer: AIOKafkaProducer, offsets: Mapping[tuple[str, int], int], member: GroupMember
    ) -> None:
        await producer.send_offsets_to_transaction(
            {TopicPartition(*tp): OffsetAndMetadata(offset, "") for tp, offset in offsets.items()}, member
        )
        await producer.commit_transaction()
        await producer.begin_transaction()

    async def until_visible(self, group: str, offsets: Mapping[tuple[str, int], int]) -> None:
        """Until the group's committed offsets read back at least ``offsets``. The broker
        answers a commit before the transaction's markers reach the group's offsets, and
        aiokafka's offset fetch does not ask for stable offsets: a partition handed over
        at once could be read from its previous commit by its next owner, and the leads of
        the last transaction written twice (docs/exactly-once-design.md measured the delay)."""
        if not offsets:
            return
        deadline = time.monotonic() + VISIBLE_WITHIN
        admin = AIOKafkaAdminClient(**self.kafka.client_options())
        try:
            await admin.start()
            while True:
                found = await admin.list_consumer_group_offsets(
                    group, partitions=[TopicPartition(*tp) for tp in offsets]
                )
                behind = {
                    tp: o for tp, o in offsets.items() if found.get(TopicPartition(*tp), _NONE).offset < o
                }
                if not behind:
                    return
                if time.monotonic() > deadline:
                    log.warning("exactly-once: commits not readable after %.0fs, handing over anyway: %s",
                                VISIBLE_WITHIN, behind)  # fmt: skip
                    return
                await asyncio.sleep(0.005)
        except Exception as exc:  # the broker is away: the hand-over cannot complete either
            log.warning("exactly-once: could not read the commit back (%r)", exc)
        finally:
            await admin.close()

    async def abort_and_exit(self, why: str) -> NoReturn:
        log.critical("exactly-once: %s; aborting the open transaction and exiting uncommitted "
                     "(the inputs are read again from the last commit)", why)  # fmt: skip
        try:
            await asyncio.wait_for(self._abort_by_reinitialising(), ABORT_WITHIN)
        except Exception as exc:  # the broker is away: the transaction ends by its timeout
            log.critical("exactly-once: could not abort (%r); it ends within %d s", exc,
                         TRANSACTION_TIMEOUT_MS // 1000)  # fmt: skip
        logging.shutdown()
        os._exit(EXIT_TRANSACTION_FAILED)

    async def _abort_by_reinitialising(self) -> None:
        self._aborting = True  # every write waits from now on (the process exits after this)
        old = self._producer
        if old is not None:
            try:
                await asyncio.wait_for(old.stop(), 2.0)
            except Exception:
                log.debug("stopping the failed producer", exc_info=True)
        successor = self._new_producer()
        await successor.start()  # InitProducerId with the same id: the broker aborts the open one
        await successor.stop()
