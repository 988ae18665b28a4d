"""A flow's lead agent: owns its lead loop's life. Its stream stays unused: the consumer hands
the flow's input topic's fetched records to the intake (agents.intake says why); the agent
starts the loop, attaches it to the flow's intake and, when stopped, drains it."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol

import faust
from faust.types import Message

from agents.faust_seam import LeadApp
from agents.faust_settings import raw_topic
from agents.inflight import LeadLoop, exit_if_it_fails
from agents.intake import FlowIntake
from agents.observe import LeadObserver
from agents.output import OutputWriter
from agents.shared_client import SharedClient
from agents.worker_options import WorkerOptions
from streams.flow import Topics
from streams.pipeline import Output
from streams.step.batch import Batcher


class LeadFlow(Protocol):
    """A flow as its lead agent sees it (agents.flow_worker.FlowWorker)."""

    name: str
    topics: Topics
    intake: FlowIntake
    writer: OutputWriter
    observer: LeadObserver
    loop: LeadLoop | None

    def process_message(self, message: Message) -> Coroutine[Any, Any, Output]:
        """The lead's run on the flow's current version (bound now, run to its end)."""

    @property
    def batcher(self) -> Batcher: ...


def add_lead_agent(
    app: LeadApp, flow: LeadFlow, client: SharedClient, options: WorkerOptions
) -> faust.types.AgentT:
    lead_topic = raw_topic(app, flow.topics.input)
    client.add_user()

    @app.agent(lead_topic, name=f"{flow.name}:leads")
    async def process_leads(stream: faust.StreamT) -> None:
        """The stream stays unused: the consumer hands this topic's fetched records to the
        flow's intake (agents.intake says why). The agent owns the lead loop's life: start and drain."""
        flow.loop = leads = LeadLoop(flow.process_message, app.consumer, flow.writer, flow.observer,
                                     options.max_in_flight, in_order=options.exactly_once)  # fmt: skip
        writing = asyncio.ensure_future(leads.write_forever())
        writing.add_done_callback(exit_if_it_fails)
        flow.intake.attach(leads)
        app.topics.add(lead_topic)  # subscribe, as iterating the stream would
        try:
            await asyncio.Future()  # until the agent is stopped
        finally:
            flow.intake.remove()
            batcher = flow.batcher
            batcher.stop_windowing()  # leads still arriving at a batch step go at once
            flushing = asyncio.ensure_future(batcher.close_all())
            await leads.drain(options.shutdown_grace)  # the grace covers the closed batch windows too
            flushing.cancel()
            writing.cancel()
            await client.release()

    return process_leads
