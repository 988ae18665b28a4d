"""Leads go from Faust's consumer to the lead loop a fetch at a time (a fetch: the records
one ``getmany`` returned; not a batch step's batch window, nor a Kafka record batch).

Faust hands every fetched message to its streams one by one: a ``wait_first`` with two
new tasks per message, the conductor's channel queue, an Event, the stream's iterator and
its sensors. Measured on a flow without HTTP (CPU of the worker process over 200,000
messages), a bare Faust agent cost 79 µs a message against 15 µs for aiokafka alone,
more than the whole flow. So for the lead topic the consumer
(:class:`agents.faust_seam.LeadConsumer`) passes each fetch's records to a
:class:`LeadIntake` instead. Everything else stays Faust's: group membership,
rebalances and commits (the intake tracks and acks messages with the consumer's own
``track_message``/``ack``, and the commit follows :mod:`agents.commit_ledger`), and every
other topic (retry tiers, the cache table's changelog) takes Faust's usual path.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import faust
from faust.types import Message

if TYPE_CHECKING:
    from agents.inflight import LeadLoop


def current(app: faust.App, message: Message) -> bool:
    """Whether a fetched message may still be taken: not while Faust's flow control is
    suspended (a rebalance is handing partitions over) nor from an older generation.
    Faust's streams skip such messages the same way; the new owner reads them again."""
    return app.flow_control.is_active() and message.generation_id == app.consumer_generation_id


class LeadIntake:
    """The lead topic's intake: fetched leads go into the lead loop once the agent has
    attached it. Before that a fetch waits (a lead left out while later ones of its
    partition are acked would hold that partition's commits back); after the agent
    detached it (stopping) nothing more is taken, and what is left is read again."""

    def __init__(self, app: faust.App, topic: str, chunk: int) -> None:
        self.app = app
        self.topics = frozenset({topic})
        self.chunk = chunk
        self._loop: LeadLoop | None = None
        self._attached = asyncio.Event()

    def attach(self, loop: LeadLoop) -> None:
        self._loop = loop
        self._attached.set()

    def detach(self) -> None:
        if self._loop is not None:
            self._loop.stop_admitting()

    async def deliver(self, messages: list[Message]) -> None:
        await self._attached.wait()
        assert self._loop is not None
        await self._loop.admit(messages, lambda message: current(self.app, message))
