"""How long the broker may hold a fetch that finds no new records: long when the fetch asks
for every partition the worker reads from that broker, short when some are left out.

aiokafka keeps one fetch in flight per broker and sends all of its FetchRequests with one
``fetch_max_wait_ms``. It leaves out of a fetch the partitions whose fetched records are not
consumed yet (and paused ones, and those awaiting an offset reset); a fetch for only the
others, held by the broker, delays the next fetch of the left-out ones by the whole wait
(new leads waited ~1 s behind Faust's 1500 ms: the reason for a short wait). But a short wait
for every fetch costs an idle worker ~45 empty FetchRequests a second, each listing every
partition it owns: CPU that grows with the flows. A fetch that asks for *every* partition of
its broker can wait long at no cost: a new record on any of them ends the wait at once, and
there is nothing left out to hold back.

Private names used (aiokafka 0.14, ``aiokafka/consumer/fetcher.py`` and
``aiokafka/protocol/fetch.py``): ``AIOKafkaConsumer._fetcher``,
``Fetcher._get_actions_per_node`` (wrapped on the instance: its fetch loop looks it up on
every turn), ``Fetcher._select_read_replica`` and ``FetchRequest._max_wait_ms``.
tests/test_faust_seam.py holds a contract test for each.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition


@dataclass(frozen=True)
class FetchWait:
    whole_ms: int  # the fetch asks for every partition of its broker: the broker may hold it long
    partial_ms: int  # some are left out (buffered, paused, awaiting a reset): they must not wait

    def for_fetch(self, on_broker: Collection[TopicPartition], asked: Collection[TopicPartition]) -> int:
        """The wait of a fetch asking for ``asked``, of ``on_broker``: the worker's assigned
        partitions read from the fetch's broker."""
        return self.whole_ms if set(on_broker) <= set(asked) else self.partial_ms


def asked_partitions(topics: Iterable[tuple[str, Iterable[tuple[Any, ...]]]]) -> set[TopicPartition]:
    """The partitions of a FetchRequest's ``topics`` ([(topic, [(partition, offset, max_bytes)])])."""
    return {TopicPartition(topic, entry[0]) for topic, entries in topics for entry in entries}


def hold_whole_fetches(consumer: AIOKafkaConsumer, wait: FetchWait) -> None:
    """From now on, each fetch of the started ``consumer`` gets ``wait``'s wait for what it
    asks. (A fetch sent before, while the consumer started, has the consumer's own wait.)"""
    fetcher = consumer._fetcher
    plan: Callable[[Any], tuple[Any, ...]] = fetcher._get_actions_per_node

    def plan_with_waits(assignment: Any) -> tuple[Any, ...]:
        actions = plan(assignment)
        for node_id, request in actions[0]:  # (fetch requests, resets, timeout, metadata, resumes)
            on_broker = [tp for tp in assignment.tps if fetcher._select_read_replica(tp) == node_id]
            request._max_wait_ms = wait.for_fetch(on_broker, asked_partitions(request.topics))
        return actions

    fetcher._get_actions_per_node = plan_with_waits
