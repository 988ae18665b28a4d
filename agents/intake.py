"""Leads go from Faust's consumer to the lead loop a fetch at a time.

Faust hands every fetched message to its streams one by one: a ``wait_first`` with two
new tasks per message, the conductor's channel queue, an Event, the stream's iterator and
its sensors. Measured on a flow without HTTP (CPU of the worker process over 200,000
messages), a bare Faust agent cost 79 µs a message against 15 µs for aiokafka alone,
more than the whole flow. So for the
lead topic this consumer passes each fetched batch to an :class:`Intake` instead.
Everything else stays Faust's: group membership, rebalances, offsets and commits (the
intake tracks and acks messages with the consumer's own ``track_message``/``ack``), and
every other topic (retry tiers, the cache table's changelog) takes Faust's usual path.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import Message

if TYPE_CHECKING:
    from agents.inflight import LeadLoop

log = logging.getLogger(__name__)


class Intake(Protocol):
    topics: frozenset[str]
    chunk: int  # messages handed over at most at once

    async def deliver(self, messages: list[Message]) -> None:
        """Take the messages (waiting is back-pressure on the fetch). A message the
        intake does not track is not acked, so it is read again."""


class LeadConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer, except that the intake's topics skip the streams."""

    async def _drain_messages(self, fetcher: Any) -> None:  # Faust's fetch loop, batched
        intake: Intake | None = getattr(self.app, "intake", None)
        if intake is None:
            await super()._drain_messages(fetcher)
            return
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                ait = self.getmany(timeout=1.0)
                await self.sleep(0)  # as Faust: getmany may not yield to the loop
                if not self.should_stop:
                    await self._deliver(intake, ait)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except Exception:  # Faust's fetcher then crashes the app: the worker exits, uncommitted
            log.exception("fetching leads failed")
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _deliver(self, intake: Intake, fetched: Any) -> None:
        """One fetch: the same offset bookkeeping as Faust's loop (gaps, commit cadence,
        read offsets); the intake's messages in chunks of at most ``intake.chunk``, in
        the fetch's round-robin order over partitions."""
        read_offsets = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        leads: list[Message] = []
        async for tp, message in fetched:
            offset = message.offset
            read = read_offsets[tp]
            if read is not None and offset < read:
                continue  # read before (Faust drops these too)
            if read and offset - read > 1 and acks_enabled_for(message.topic):
                await self._add_gap(tp, read + 1, offset)  # compacted or transactional gap
            if self._commit_every is not None and self._n_acked >= self._commit_every:
                self._n_acked = 0
                await self.commit()
            if message.topic in intake.topics:
                leads.append(message)
                if len(leads) >= intake.chunk:
                    await intake.deliver(leads)
                    leads = []
            else:
                await self.wait_first(self.callback(message), self.suspend_flow.wait())
            read_offsets[tp] = offset
        if leads:
            await intake.deliver(leads)


class LeadTransport(aiokafka_driver.Transport):
    Consumer = LeadConsumer


class LeadApp(faust.App):
    """A Faust app whose consumer hands ``intake``'s topics to it (None: Faust's path)."""

    intake: Intake | None = None

    def _new_transport(self) -> LeadTransport:
        return LeadTransport(self.conf.broker_consumer, self)


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
