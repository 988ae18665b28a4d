"""One agent per delayed-retry tier: it waits until the leads it took are due, then runs
them again through the flow (streams.delayed). Important notifications' tiers are the
same agents, delivering instead (agents.notification_agents)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol, TypeAlias

import faust

from agents.faust_settings import raw_topic
from agents.observe import LeadObserver
from agents.output import EXIT_OUTPUT_FAILED, OutputWriter
from agents.shared_client import SharedClient
from agents.worker_options import WorkerOptions
from streams.delayed import RetryState, tier_label, tier_topics
from streams.events import Source
from streams.flow import Flow
from streams.pipeline import Destination, Output

log = logging.getLogger(__name__)

# What a tier does with a due message: the pipeline's ``process`` (or a notification's delivery).
Process: TypeAlias = Callable[[bytes | None, Source, RetryState | None], Awaitable[Output]]


class Tier(Protocol):
    """What a flow's tiers answer to (agents.flow_worker.Runs): a due batch's run and write is
    one ``run`` (a reload waits for it; none starts while the flow drains); taken events are
    ``held`` until acked; once ``leaving`` (the flow is removed), waiting ones are put back."""

    leaving: bool

    async def enter(self, leaving: Callable[[], bool]) -> bool:
        """Until a run may start; False when ``leaving`` first."""

    def run(self) -> AbstractContextManager[None]: ...

    def held(self) -> AbstractContextManager[None]: ...


class AlwaysOpen:
    """The tier of a flow that is never reloaded nor removed (tests, tools)."""

    leaving = False

    async def enter(self, leaving: Callable[[], bool]) -> bool:
        return not leaving()

    def run(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def held(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()


def add_retry_agents(
    app: faust.App,
    flow: Flow,
    process: Process,
    client: SharedClient,
    writer: OutputWriter,
    observer: LeadObserver,
    options: WorkerOptions,
    prefix: str = "",
    tier: Tier | None = None,
) -> list[faust.types.AgentT]:
    """An agent for each of the flow's retry tiers (none without ``delayed_retry``);
    ``process``: the flow's pipeline (agents.flow_worker: its version current at each run)."""
    if flow.delayed_retry is None or not flow.topics or not flow.topics.retry:
        return []
    agents = []
    for delay, topic in tier_topics(flow.topics.retry, flow.delayed_retry).items():
        name = f"{prefix}retry-{tier_label(delay)}"
        channel = raw_topic(app, topic)
        agents.append(add_retry_agent(app, channel, name, process, client, writer, observer, options, tier))
    return agents


def add_retry_agent(
    app: faust.App,
    channel: faust.TopicT,
    name: str,
    process: Process,
    client: SharedClient,
    writer: OutputWriter,
    observer: LeadObserver,
    options: WorkerOptions,
    tier: Tier | None = None,
) -> faust.types.AgentT:
    """The agent of one retry tier: waits until the events it took are due, then re-runs
    the leads. On shutdown (or its flow's removal) while waiting, they are put back on the
    topic (they would be acked)."""
    client.add_user()
    flow_tier: Tier = tier or AlwaysOpen()

    def leaving() -> bool:
        return app.should_stop or flow_tier.leaving

    @app.agent(channel, name=name)
    async def retry_leads(stream: faust.StreamT) -> None:
        try:
            async for events in stream.take_events(options.fetch_size, within=options.take_within):
                with flow_tier.held():
                    states = [retry_state(event) for event in events]
                    due = max(state.due for state in states)
                    if not (await wait_until(due, leaving) and await flow_tier.enter(leaving)):
                        requeue = [requeued(event, channel.get_topic_name()) for event in events]
                        await writer.write_all(requeue, then=acker(app, events))
                        continue

                    ack = acker(app, events)
                    work = functools.partial(handle, process, writer, observer, events, states, ack)
                    with flow_tier.run():  # (no await between the door and the count)
                        await run_to_the_end(work, options.shutdown_grace)
        finally:
            await client.release()

    return retry_leads


async def handle(
    process: Process,
    writer: OutputWriter,
    observer: LeadObserver,
    events: Sequence[faust.EventT],
    states: Sequence[RetryState | None] | None = None,
    then: Callable[[], None] | None = None,
) -> None:
    """Run the taken events' leads concurrently and write their outputs (acknowledged);
    ``then`` acks them (see :func:`acker`)."""
    observer.fetched(len(events))
    states = states or [None] * len(events)
    outputs = await asyncio.gather(
        *(
            process(event.message.value, source_of(event.message), state)
            for event, state in zip(events, states, strict=True)
        )
    )
    await writer.write_all(outputs, then=then)
    observer.written([event.message for event in events], outputs)


def acker(app: faust.App, events: Sequence[faust.EventT]) -> Callable[[], None]:
    """Acks the events as soon as their outputs are acknowledged, before a commit can run:
    under exactly-once the transaction holding the outputs must commit their offsets too.
    (``take_events`` acks them again later, after the body: a second ack does nothing.)"""

    def ack() -> None:
        for event in events:
            app.consumer.ack(event.message)

    return ack


async def run_to_the_end(work: Callable[[], Awaitable[None]], grace: float) -> None:
    """Run the taken events' leads to completion before take_events may ack them. A clean
    stop lets them finish (see test_shutdown_mid_batch_loses_no_lead); if the agent is
    cancelled instead, take_events would ack them as the body exits, so their outputs
    must be written first, or the process must exit uncommitted."""
    running = asyncio.ensure_future(work())
    try:
        await asyncio.shield(running)
    except asyncio.CancelledError:
        try:
            await asyncio.wait_for(asyncio.shield(running), grace)
        except (TimeoutError, asyncio.CancelledError):
            log.critical("in-flight batch not written within %.0fs of shutdown; exiting uncommitted", grace)
            os._exit(EXIT_OUTPUT_FAILED)
        raise


async def wait_until(due: float, leaving: Callable[[], bool]) -> bool:
    """Sleep until ``due`` (unix time); False if ``leaving`` (the app or the flow stopping) meanwhile."""
    while (remaining := due - time.time()) > 0:
        if leaving():
            return False
        await asyncio.sleep(min(remaining, 0.5))  # wake up to notice a shutdown
    return not leaving()


def source_of(message: faust.types.Message) -> Source:
    return Source(message.topic, message.partition, message.offset)


def retry_state(event: faust.EventT) -> RetryState:
    return RetryState.from_headers(event.message.headers or [], source_of(event.message))


def requeued(event: faust.EventT, topic: str) -> Output:
    headers = event.message.headers or []
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
    return Output(Destination.RETRY, event.message.key or b"", event.message.value or b"", "requeued",
                  topic=topic, headers=pairs)  # fmt: skip
