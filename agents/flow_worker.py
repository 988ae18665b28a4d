"""One flow of a worker: its running version (runner, pipeline, protections), its lead loop
and agents, and what happens to it live: started, reloaded (drained, then swapped), removed.

A lead runs on the version current when its run starts, to its end: the lead loop binds the
pipeline when it admits a lead, a retry tier when its run passes ``Runs``. A reload closes
both doors (new leads park; the flow's partitions are paused, the other flows go on), sends
the open batch windows, waits until every lead taken is written, swaps, and opens again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import Message

from agents.faust_seam import FaustRecordBatches, LeadApp, start_live, stop_live, unsubscribe
from agents.inflight import LeadLoop
from agents.intake import FlowIntake, LeadIntake
from agents.lead_agent import add_lead_agent
from agents.notification_agents import add_notification_agents
from agents.observe import LeadObserver
from agents.output import OutputWriter
from agents.retry_agents import add_retry_agents, source_of
from agents.shared_client import SharedClient
from agents.transactions import TransactionalProducer
from agents.worker_options import WorkerOptions
from agents.write_gate import Count
from streams.activity import ActivityLog
from streams.cache import ResponseCache
from streams.delayed import RetryState
from streams.events import Source
from streams.flow import Flow, require_topics
from streams.flow_files import carry_over, read_topics
from streams.http_client import HttpClient
from streams.metrics import Metrics, forget
from streams.notification_delivery import NotificationDelivery
from streams.pipeline import Destination, LeadPipeline, Output
from streams.protections import Protections
from streams.recent_problems import RecentProblems
from streams.runner import FlowRunner
from streams.step.batch import Batcher

log = logging.getLogger(__name__)

RUNNING, DRAINING, STOPPED = "running", "draining", "stopped"


@dataclass
class WorkerParts:
    """What every flow of a worker shares: one consumer (through ``intake``), one producer,
    one HTTP client (a pool per integration definition), one metrics registry."""

    app: LeadApp
    options: WorkerOptions
    metrics: Metrics
    client: HttpClient
    shared: SharedClient  # closed once the last agent calling partners stopped
    activity: ActivityLog
    intake: LeadIntake
    transactions: TransactionalProducer | None  # exactly-once: the worker's one transactional producer
    problems: RecentProblems  # the last error and failure events, for the web console


class Version:
    """One version of a flow file, ready to run leads."""

    def __init__(self, flow: Flow, parts: WorkerParts, cache: ResponseCache, keep: Version | None) -> None:
        options, metrics = parts.options, parts.metrics
        self.flow = flow
        self.protections = Protections(flow, metrics, keep=keep.protections if keep is not None else None)
        self.runner = FlowRunner(flow, parts.client, metrics, self.protections, cache, batch_windows=True,
                                 activity=parts.activity, queue_notifications=True,
                                 max_notification_bytes=options.max_output_bytes)  # fmt: skip
        self.pipeline = LeadPipeline(self.runner, metrics, options.max_lead_bytes, options.max_output_bytes,
                                     parts.problems)  # fmt: skip
        queue = require_topics(flow).notifications
        notify = any(step.notify for step in flow.steps)
        self.delivery = (
            NotificationDelivery(flow, queue, self.runner.services, metrics) if queue and notify else None
        )


class Runs:
    """A flow's retry tiers (agents.retry_agents.Tier): their runs counted and, ``gated``,
    held at the door while a reload drains; the batches they hold counted; ``leaving`` once
    the flow is removed (a batch waiting for its time is put back on its topic)."""

    def __init__(self, gated: bool = True) -> None:
        self.gated = gated
        self.leaving = False
        self._open = asyncio.Event()
        self._open.set()
        self._running = Count()
        self._held = Count()

    async def enter(self, leaving: Callable[[], bool]) -> bool:
        """Wait until a run may start; False once ``leaving`` (the app or the flow stopping):
        the batch is then put back, not left to be acked by a cancellation at the door."""
        while self.gated and not self._open.is_set():
            if leaving():
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._open.wait(), 0.5)
        return not leaving()

    @contextlib.contextmanager
    def run(self) -> Iterator[None]:
        with self._running.one():
            yield

    def held(self) -> contextlib.AbstractContextManager[None]:
        return self._held.one()

    def close(self) -> None:
        self._open.clear()

    def reopen(self) -> None:
        self._open.set()

    async def until_idle(self) -> None:
        await self._running.until_zero()

    async def until_nothing_held(self) -> None:
        await self._held.until_zero()


class FlowWorker:
    def __init__(
        self, path: str, flow: Flow, parts: WorkerParts, cache: ResponseCache, input_partitions: int | None
    ) -> None:
        self.path = path
        self.parts = parts
        self.cache = cache
        self.version = Version(flow, parts, cache, keep=None)
        self.input_partitions = input_partitions
        self.state = RUNNING
        self.owned = 0  # input partitions this worker owns
        self.topics = require_topics(flow)
        self.intake: FlowIntake = parts.intake.add(self.topics.input)
        self.writer = output_writer(parts, flow)
        self.observer = LeadObserver(parts.app, parts.metrics, flow.name, self.writer.topic_of)
        self.runs = Runs()  # the lead tiers: a reload waits for their runs
        self.deliveries = Runs(gated=False)  # the important notifications' tiers: not waited for
        self.loop: LeadLoop | None = None  # made by the lead agent when it starts
        self.agents: list[faust.types.AgentT] = []
        self.set_owned(0)  # one partition's share of the rate limits until the group assigns
        self._info(1)

    @property
    def flow(self) -> Flow:
        return self.version.flow

    @property
    def name(self) -> str:
        return self.flow.name

    @property
    def input_topic(self) -> str:
        return self.topics.input

    @property
    def batcher(self) -> Batcher:
        return self.version.runner.batcher

    # -- what the agents call: the version current when a run starts ------------------

    def process_message(self, message: Message) -> Coroutine[Any, Any, Output]:
        return self.version.pipeline.process(message.value, source_of(message))

    async def process_again(self, raw: bytes | None, source: Source, retry: RetryState | None) -> Output:
        return await self.version.pipeline.process(raw, source, retry)  # (inside a tier's run: Runs)

    async def deliver(self, raw: bytes | None, source: Source, retry: RetryState | None = None) -> Output:
        delivery = self.version.delivery
        if delivery is None:  # the current version has no notify step left: the record is refused
            queue, services = self.topics.notifications or "", self.version.runner.services
            delivery = NotificationDelivery(self.flow, queue, services, self.parts.metrics)
        return await delivery.deliver(raw, source, retry)

    # -- life -------------------------------------------------------------------------

    def add_agents(self) -> None:
        """The flow's agents: its leads, its retry tiers, its notifications (and their tiers)."""
        parts, options = self.parts, self.parts.options
        self.agents.append(add_lead_agent(parts.app, self, parts.shared, options))
        tiers = add_retry_agents(parts.app, self.flow, self.process_again, parts.shared, self.writer,
                                 self.observer, options, prefix=f"{self.name}:", tier=self.runs)  # fmt: skip
        self.agents.extend(tiers)
        if self.version.delivery is not None:
            notifications = add_notification_agents(
                parts.app, self.flow, self.deliver, parts.shared, self.writer, parts.metrics, options,
                tier=self.deliveries,
            )
            self.agents.extend(notifications)

    async def start_live(self) -> None:
        """Start the agents of a flow added while the worker runs (its topics join the
        subscription: the group rebalances once)."""
        self.add_agents()
        for agent in self.agents:
            await start_live(self.parts.app, agent)

    def set_owned(self, owned: int) -> None:
        """This worker owns ``owned`` of the input's partitions: its share of the rate limits."""
        self.owned = owned
        if self.input_partitions:
            self.version.protections.set_share(min(max(owned, 1) / self.input_partitions, 1.0))

    async def reload(self, flow: Flow) -> None:
        """Run ``flow`` (same name and topics) from now on: the leads taken finish on the
        running version, its open batch windows are sent, then new leads run on ``flow``."""
        self.state = DRAINING
        try:
            await self._drain()
            forget(self.parts.metrics.flow_info, self.name, self.flow.version)
            # The integrations whose definition did not change are kept as they are (their
            # limiter, circuit, slots, OAuth token and pool go with the object).
            self.version = Version(carry_over(flow, self.flow), self.parts, self.cache, keep=self.version)
            self.cache.index.policy = flow.cache_policy  # type: ignore[attr-defined]
            self._info(1)
        finally:
            self.state = RUNNING
            self.runs.reopen()
            self.intake.reopen()

    async def _drain(self, tiers_too: bool = True) -> None:
        """Until every lead taken is written: new leads park (and, ``tiers_too``, no retry run
        starts), open batch windows are sent at once."""
        self.intake.close()
        if tiers_too:
            self.runs.close()
        batcher = self.version.runner.batcher
        batcher.stop_windowing()  # leads still reaching a batch step go at once
        closing = asyncio.ensure_future(batcher.close_all())
        try:
            while self.loop is not None and self.loop.unwritten:  # (one admitted as it went idle)
                await self.loop.until_idle()
                await asyncio.sleep(0)
            await self.runs.until_idle()
            await closing
        finally:
            closing.cancel()

    async def remove(self) -> None:
        """Drain the flow, let its retry runs finish and put back the batches waiting for their
        time, commit what it finished, stop its agents and leave its topics."""
        self.state = DRAINING
        self.runs.leaving = self.deliveries.leaving = True
        await self._drain(tiers_too=False)  # (a due batch held must get to run, or it is held forever)
        await self.runs.until_nothing_held()
        await self.deliveries.until_nothing_held()
        self.intake.remove()
        await self.parts.app.consumer.commit()  # its last leads' offsets (a transaction under exactly-once)
        for agent in self.agents:
            await stop_live(self.parts.app, agent)
        unsubscribe(self.parts.app, read_topics(self.flow))
        self.state = STOPPED
        forget(self.parts.metrics.flow_info, self.name, self.flow.version)

    def _info(self, value: int) -> None:
        self.parts.metrics.flow_info.labels(self.name, self.flow.version).set(value)


def output_writer(parts: WorkerParts, flow: Flow) -> OutputWriter:
    """Through Faust's producer, or under exactly-once the worker's transactional one: then a
    refused write is not sent again in the same transaction, it aborts it (agents.transactions)."""
    topics = require_topics(flow)
    destinations = {Destination.ENRICHED: topics.enriched, Destination.ERRORS: topics.errors}
    producer = parts.transactions
    if producer is None:
        return OutputWriter(FaustRecordBatches(parts.app.producer), destinations, flow.name, parts.metrics)
    return OutputWriter(producer, destinations, flow.name, parts.metrics, attempts=1, gate=producer.gate,
                        give_up=producer.abort_and_exit)  # fmt: skip
