"""The Faust app: one agent that runs the flow on every lead of the input topic."""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import faust
from prometheus_client import CollectorRegistry, generate_latest

from agents.output import EXIT_OUTPUT_FAILED, OutputWriter
from streams.events import Source
from streams.flow import Flow
from streams.http_client import HttpClient
from streams.metrics import Metrics
from streams.pipeline import Destination, LeadPipeline
from streams.runner import FlowRunner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerOptions:
    bootstrap: str
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    batch_size: int = 500  # leads taken per fetch and processed concurrently
    batch_within: float = 0.05  # seconds to wait for a batch to fill
    shutdown_grace: float = 30.0  # seconds to finish an in-flight batch on shutdown
    group_id: str | None = None
    data_dir: str | None = None


def create_app(flow: Flow, options: WorkerOptions, registry: CollectorRegistry) -> faust.App:
    app_id = options.group_id or f"leadstreams-{flow.name}"
    app = faust.App(
        app_id,
        broker=f"kafka://{options.bootstrap}",
        web_host=options.web_host,
        web_port=options.web_port,
        web_bind=options.web_host,
        datadir=options.data_dir or str(Path(tempfile.gettempdir()) / f"{app_id}-data"),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        key_serializer="raw",
        value_serializer="raw",
        stream_buffer_maxsize=max(4096, options.batch_size * 2),
    )
    metrics = Metrics(registry)
    source = app.topic(
        flow.topics.input, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    topics = {Destination.ENRICHED: flow.topics.enriched, Destination.ERRORS: flow.topics.errors}

    @app.agent(source, name="leads")
    async def process_leads(stream: faust.StreamT) -> None:
        client = HttpClient()
        pipeline = LeadPipeline(FlowRunner(flow, client, metrics), metrics)
        writer = OutputWriter(app.producer, topics, flow.name, metrics)
        try:
            # take_events acks a batch only after this body returns, so every
            # output is acknowledged by Kafka before its input can be committed.
            async for events in stream.take_events(options.batch_size, within=options.batch_within):
                batch = asyncio.ensure_future(handle(pipeline, writer, events))
                try:
                    await asyncio.shield(batch)
                except asyncio.CancelledError:
                    # A clean stop lets the current batch finish (seen in
                    # test_shutdown_mid_batch_loses_no_lead); if the agent is
                    # cancelled instead, take_events would ack the batch as this
                    # body exits, so its outputs must be written first.
                    await finish_or_exit(batch, options.shutdown_grace)
                    raise
        finally:
            await client.close()

    @app.page("/metrics")
    async def metrics_page(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
        return web.bytes(generate_latest(registry), content_type="text/plain")

    return app


async def handle(pipeline: LeadPipeline, writer: OutputWriter, events: list[faust.EventT]) -> None:
    outputs = await asyncio.gather(
        *(
            pipeline.process(
                event.message.value,
                Source(event.message.topic, event.message.partition, event.message.offset),
            )
            for event in events
        )
    )
    await writer.write_all(outputs)


async def finish_or_exit(batch: asyncio.Future[None], grace: float) -> None:
    """Let an in-flight batch finish; if it cannot, exit before its events are committed."""
    try:
        await asyncio.wait_for(asyncio.shield(batch), grace)
    except (TimeoutError, asyncio.CancelledError):
        log.critical("in-flight batch not written within %.0fs of shutdown; exiting uncommitted", grace)
        os._exit(EXIT_OUTPUT_FAILED)
