"""The lead agent: owns the lead loop's life. Its stream stays unused: the consumer hands
the lead topic's fetched records to the intake (agents.intake says why); the agent starts
the loop, attaches it to the intake and, when stopped, drains it."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import faust

from agents.faust_seam import LeadApp
from agents.faust_settings import raw_topic
from agents.inflight import LeadLoop, exit_if_it_fails
from agents.intake import LeadIntake
from agents.observe import LeadObserver
from agents.output import OutputWriter
from agents.retry_agents import source_of
from agents.shared_client import SharedClient
from agents.worker_options import WorkerOptions
from streams.pipeline import LeadPipeline, Output
from streams.runner import FlowRunner


def add_lead_agent(
    app: LeadApp,
    input_topic: str,
    runner: FlowRunner,
    client: SharedClient,
    pipeline: LeadPipeline,
    writer: OutputWriter,
    observer: LeadObserver,
    options: WorkerOptions,
) -> None:
    lead_topic = raw_topic(app, input_topic)
    app.intake = intake = LeadIntake(app, input_topic, options.fetch_size)
    client.add_user()

    @app.agent(lead_topic, name="leads")
    async def process_leads(stream: faust.StreamT) -> None:
        """The stream stays unused: the consumer hands this topic's fetched records to
        ``intake`` (agents.intake says why). The agent owns the lead loop's life: start and drain."""

        def process(message: faust.types.Message) -> Coroutine[Any, Any, Output]:  # no extra coroutine
            return pipeline.process(message.value, source_of(message))

        app.leads = leads = LeadLoop(process, app.consumer, writer, observer, options.max_in_flight,
                                     in_order=options.exactly_once)  # fmt: skip
        writing = asyncio.ensure_future(leads.write_forever())
        writing.add_done_callback(exit_if_it_fails)
        intake.attach(leads)
        app.topics.add(lead_topic)  # subscribe, as iterating the stream would
        try:
            await asyncio.Future()  # until the agent is stopped
        finally:
            intake.detach()
            runner.batcher.stop_windowing()  # leads still arriving at a batch step go at once
            flushing = asyncio.ensure_future(runner.batcher.close_all())
            await leads.drain(options.shutdown_grace)  # the grace covers the closed batch windows too
            flushing.cancel()
            writing.cancel()
            await client.release()
