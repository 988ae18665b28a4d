"""The agents that deliver notifications (``notify:`` steps, streams.notifications): one
on the flow's notifications topic, and one per delayed-retry tier of the important ones.

A notification's record was written with its lead's output, before the lead's offset
committed; here it is delivered, its attempts event (and, to retry it later, the record on
the next tier) written, and only then is the record's offset acked. A crash between the
two sends it again after the restart: at least once, with the same Idempotency-Key.

The notifications topic takes Faust's usual path, not the lead intake's: when delivery
falls behind (a webhook answering in 2 s), Faust's stream buffer fills and Faust stops
fetching that topic's partitions alone, so the leads' fetch never waits for it."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import faust

from agents.faust_seam import HandoverHook
from agents.faust_settings import raw_topic
from agents.inflight import LeadLoop, Ledger, exit_if_it_fails
from agents.intake import current
from agents.observe import LeadObserver
from agents.output import OutputWriter
from agents.retry_agents import Process, Tier, add_retry_agent, source_of
from agents.shared_client import SharedClient
from agents.worker_options import WorkerOptions
from streams.delayed import tier_label, tier_topics
from streams.flow import Flow
from streams.metrics import Metrics
from streams.notifications import tier_prefix
from streams.pipeline import Output


def add_notification_agents(
    app: faust.App,
    flow: Flow,
    deliver: Process,
    client: SharedClient,
    writer: OutputWriter,
    metrics: Metrics,
    options: WorkerOptions,
    tier: Tier | None = None,
) -> list[faust.types.AgentT]:
    """None for a flow without ``notify:`` steps; tiers only when one is important.
    ``deliver``: the flow's notification delivery (agents.flow_worker: its current version's,
    with the lead runner's rate limiters, circuits and slots)."""
    notify_steps = [step for step in flow.steps if step.notify is not None]
    queue = flow.topics.notifications if flow.topics is not None else None
    if not notify_steps or queue is None:
        return []
    observer = LeadObserver(app, metrics, flow.name, writer.topic_of, leads=False)
    limit, grace = slots(flow, options), options.shutdown_grace
    name = f"{flow.name}:notifications"
    channel = raw_topic(app, queue)
    agents = [add_queue_agent(app, channel, name, deliver, client, writer, observer, limit, grace,
                              in_order=options.exactly_once)]  # fmt: skip
    if any(step.notify.important for step in notify_steps if step.notify is not None):
        for delay, topic in tier_topics(tier_prefix(queue), flow.notification_retry).items():
            name = f"{flow.name}:notify-{tier_label(delay)}"
            channel = raw_topic(app, topic)
            agent = add_retry_agent(app, channel, name, deliver, client, writer, observer, options, tier)
            agents.append(agent)
    return agents


def slots(flow: Flow, options: WorkerOptions) -> int:
    """Notifications delivered at once: as many as their integrations' concurrency slots
    (more would only wait for one, ahead of any lead step of the same integration)."""
    integrations = {step.integration.name: step.integration for step in flow.steps if step.notify is not None}
    return max(1, min(options.max_in_flight, sum(i.concurrency for i in integrations.values())))


class TrackedByStream:
    """The consumer as the loop's ledger, for messages Faust's stream already tracked."""

    def __init__(self, consumer: Ledger) -> None:
        self.consumer = consumer

    def track_message(self, message: faust.types.Message) -> None:
        pass  # the stream did, when it handed the message over

    def ack(self, message: faust.types.Message) -> bool:
        return self.consumer.ack(message)

    def release(self, message: faust.types.Message) -> None:
        self.consumer.release(message)


def add_queue_agent(
    app: faust.App,
    channel: faust.TopicT,
    name: str,
    deliver: Process,
    client: SharedClient,
    writer: OutputWriter,
    observer: LeadObserver,
    limit: int,
    grace: float,
    in_order: bool = False,
) -> faust.types.AgentT:
    """Each record is delivered as its own task (a slow one holds back only itself), in a
    :class:`LeadLoop` like the leads: written in groups, acked once written."""

    client.add_user()

    @app.agent(channel, name=name)
    async def deliver_notifications(stream: faust.StreamT) -> None:
        def delivery(message: faust.types.Message) -> Coroutine[Any, Any, Output]:
            return deliver(message.value, source_of(message), None)  # type: ignore[return-value]

        loop = LeadLoop(delivery, TrackedByStream(app.consumer), writer, observer, limit, in_order=in_order)
        writing = asyncio.ensure_future(loop.write_forever())
        writing.add_done_callback(exit_if_it_fails)
        # A hand-over (rebalance, stop) waits for every record taken: deliveries waiting
        # for a rate limit (a 1/s webhook, 100 in flight) would hold every partition of the
        # group. They are given back instead, read again from the commit by the next owner
        # (a request already sent is sent again, with its Idempotency-Key).
        hook = HandoverHook(app, loop.hand_back)
        try:
            # noack: the loop acks a record once its attempts event is written, not Faust
            # when the next record comes.
            async for event in stream.noack().events():
                await loop.admit([event.message], lambda message: current(app, message))
        finally:
            loop.stop_admitting()
            loop.hand_back()
            await loop.drain(grace)
            del hook
            writing.cancel()
            await client.release()

    return deliver_notifications
