"""Leads go from Faust's consumer to their flow's lead loop a fetch at a time (a fetch: the
records one ``getmany`` returned; not a batch step's batch window, nor a Kafka record batch).

Faust hands every fetched message to its streams one by one: a ``wait_first`` with two
new tasks per message, the conductor's channel queue, an Event, the stream's iterator and
its sensors. Measured on a flow without HTTP (CPU of the worker process over 200,000
messages), a bare Faust agent cost 79 µs a message against 15 µs for aiokafka alone,
more than the whole flow. So for the lead topics the consumer
(:class:`agents.faust_seam.LeadConsumer`) passes each fetch's records to the
:class:`LeadIntake` instead. Everything else stays Faust's: group membership,
rebalances and commits (the intake tracks and acks messages with the consumer's own
``track_message``/``ack``, and the commit follows :mod:`agents.commit_ledger`), and every
other topic (retry tiers, the cache table's changelog) takes Faust's usual path.

One worker runs many flows, each on its own input topic, from one consumer: a flow that
cannot take its leads now (its cap of leads in flight is reached behind a slow partner, or a
reload is draining it) must not hold the fetch of the others. Its leads are parked, in order,
and its partitions paused; a task of its own admits them as it can, then resumes them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import faust
from faust.types import TP, Message

from agents.inflight import exit_if_it_fails

if TYPE_CHECKING:
    from agents.inflight import LeadLoop

log = logging.getLogger(__name__)


def current(app: faust.App, message: Message) -> bool:
    """Whether a fetched message may still be taken: not while Faust's flow control is
    suspended (a rebalance is handing partitions over) nor from an older generation.
    Faust's streams skip such messages the same way; the new owner reads them again."""
    return app.flow_control.is_active() and message.generation_id == app.consumer_generation_id


class FlowIntake:
    """One flow's door. Closed (a reload draining the flow, or before its loop is attached)
    it parks what comes; removed, it takes nothing more (what it does not take is not acked,
    so it is read again, from the commit, by whoever runs the flow next)."""

    def __init__(self, app: faust.App, topic: str, chunk: int) -> None:
        self.app = app
        self.topic = topic
        self.chunk = chunk
        self.loop: LeadLoop | None = None
        self.removed = False
        self._open = asyncio.Event()
        self._parked: deque[Message] = deque()
        self._paused: set[TP] = set()
        self._unparking: asyncio.Task[None] | None = None

    def attach(self, loop: LeadLoop) -> None:
        self.loop = loop
        self._open.set()

    def close(self) -> None:
        """Park what comes from now on (a reload drains the flow)."""
        self._open.clear()

    def reopen(self) -> None:
        if self.loop is not None:
            self._open.set()

    def remove(self) -> None:
        """Take nothing more: what is parked or comes later is held (the commit stays before
        it until its partition is revoked), to be read again by whoever runs the flow next."""
        self.removed = True
        self._open.set()  # the parking task ends
        self._hold(self._parked)
        self._parked.clear()
        if self.loop is not None:
            self.loop.stop_admitting()
            self.loop = None  # (the removed flow's objects are not kept alive through its intake)

    @property
    def parked(self) -> int:
        return len(self._parked)

    async def offer(self, messages: list[Message]) -> None:
        """Admit now when the flow can take all of them without waiting; else park them and
        pause their partitions (the fetch goes on for the other flows)."""
        if self.removed:
            self._hold(messages)
            return
        loop = self.loop
        if loop is not None and not self._parked and self._open.is_set() and loop.room >= len(messages):
            await loop.admit(messages, self._current)  # (does not wait: there is room)
            return
        self._parked.extend(messages)
        # Paused again each time, not once: a rebalance meanwhile unpaused what it reassigned.
        # (Not a message of an older generation: its partition may be revoked already.)
        tps = {TP(message.topic, message.partition) for message in messages if self._current(message)}
        self._paused |= tps
        self.app.consumer.pause_partitions(tps)
        if self._unparking is None or self._unparking.done():
            self._unparking = asyncio.ensure_future(self._unpark())
            self._unparking.add_done_callback(exit_if_it_fails)

    def _hold(self, messages: Iterable[Message]) -> None:
        for message in messages:
            if self._current(message):  # (an older generation's is read again by its new owner anyway)
                self.app.consumer.hold(message)

    def _current(self, message: Message) -> bool:
        return current(self.app, message)

    async def _unpark(self) -> None:
        while self._parked:
            await self._open.wait()
            if self.removed or self.loop is None:
                break
            # No more than there is room for: a batch admit waits for slots, and what it takes
            # after a reload closed the door meanwhile would run on the old version.
            size = min(self.chunk, len(self._parked), max(1, self.loop.room))
            batch = [self._parked.popleft() for _ in range(size)]
            await self.loop.admit(batch, self._current)  # waits for slots: this flow only
        # (no await from the check above to here: nothing is parked behind a resumed partition)
        paused, self._paused = self._paused, set()
        assigned = self.app.consumer.assignment()
        # Faust's TP, not aiokafka's TopicPartition: Faust adds what it is given to the
        # partitions its fetch asks for, and asserts they are TPs.
        self.app.consumer.resume_partitions({tp for tp in paused if tp in assigned})


class LeadIntake:
    """The lead topics' intake: every flow's input topic, routed to its :class:`FlowIntake`.
    A fetch waits only until every flow of its messages has an intake (a flow's lead agent
    registers it as it starts); a flow's own waits happen in its parking task."""

    def __init__(self, app: faust.App, chunk: int) -> None:
        self.app = app
        self.chunk = chunk
        self.flows: dict[str, FlowIntake] = {}  # by input topic

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(self.flows)

    def add(self, topic: str) -> FlowIntake:
        """A flow's intake (a flow added again gets a new one: the old one was removed)."""
        intake = self.flows[topic] = FlowIntake(self.app, topic, self.chunk)
        return intake

    def held_back_at(self) -> float | None:
        """When a flow's fetch was last held back by its cap (now while one waits or parks):
        /ready must not read that silence as Kafka's (agents.readiness)."""
        times = [loop.held_back_at() for loop in self._loops()]
        if any(intake.parked for intake in self.flows.values()):
            times.append(time.time())  # (wall clock, as aiokafka's fetch times)
        return max((t for t in times if t is not None), default=None)

    @property
    def unwritten(self) -> int:
        return sum(loop.unwritten for loop in self._loops())

    def _loops(self) -> Iterator[LeadLoop]:
        return (intake.loop for intake in self.flows.values() if intake.loop is not None)

    async def deliver(self, messages: list[Message]) -> None:
        by_topic: dict[str, list[Message]] = {}
        for message in messages:
            by_topic.setdefault(message.topic, []).append(message)
        for topic, some in by_topic.items():
            await self.flows[topic].offer(some)
