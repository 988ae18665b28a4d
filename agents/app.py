"""The Faust app: the agent that runs the flow on every lead of the input topic, and
one agent per delayed-retry tier that re-runs deferred leads when they are due."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import faust
from prometheus_client import CollectorRegistry, generate_latest

from agents.faust_seam import LeadApp, aiokafka_producer, last_fetch_time, producer_connected
from agents.health import BLOCKED_AFTER, LoopWatchdog
from agents.inflight import LeadLoop, exit_if_it_fails
from agents.intake import LeadIntake
from agents.kafka_connection import KafkaConnection
from agents.memory import fix_malloc_thresholds
from agents.observe import BatchObserver
from agents.output import EXIT_OUTPUT_FAILED, FaustProducerBatches, OutputWriter
from agents.readiness import Readiness
from agents.table_cache import TableCache
from streams.activity import ActivityLog
from streams.batching import Batcher
from streams.cache import InMemoryCache, ResponseCache
from streams.delayed import RetryState, tier_label, tier_topics
from streams.events import MAX_LEAD_BYTES, MAX_OUTPUT_BYTES, Source
from streams.flow import Flow
from streams.guards import Guards
from streams.http_client import HttpClient
from streams.metrics import CacheMetrics, Metrics
from streams.pipeline import Destination, LeadPipeline, Output
from streams.runner import FlowRunner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerOptions:
    kafka: KafkaConnection | str  # a bare string: a PLAINTEXT bootstrap address
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    batch_size: int = 500  # leads handed to the lead loop per fetch; a retry tier's batch
    max_in_flight: int = 2000  # leads taken and not yet written (held by slow calls or batch windows)
    batch_within: float = 0.005  # seconds a retry tier's batch waits to fill
    shutdown_grace: float = 30.0  # seconds to finish an in-flight batch on shutdown
    blocked_after: float = BLOCKED_AFTER  # seconds the event loop may not answer before /healthz fails
    group_id: str | None = None
    data_dir: str | None = None
    input_partitions: int | None = None  # to take this worker's share of the rate limits
    max_lead_bytes: int = MAX_LEAD_BYTES
    max_output_bytes: int = MAX_OUTPUT_BYTES  # larger outputs go to errors as a short event
    instance_id: str | None = None  # static group membership: a restart takes its partitions back at once
    session_timeout: float = 45.0  # seconds without heartbeats before the group drops a member
    replication_factor: int = 1  # of the topics Faust creates itself (its leader topic, changelogs)


def create_app(flow: Flow, options: WorkerOptions, registry: CollectorRegistry) -> LeadApp:
    app_id = options.group_id or f"leadstreams-{flow.name}"
    kafka = KafkaConnection.of(options.kafka)
    app = LeadApp(
        app_id,
        broker=[f"kafka://{server.strip()}" for server in kafka.bootstrap.split(",")],
        broker_credentials=faust_credentials(kafka),
        web_host=options.web_host,
        web_port=options.web_port,
        web_bind=options.web_host,
        datadir=options.data_dir or str(Path(tempfile.gettempdir()) / f"{app_id}-data"),
        consumer_auto_offset_reset="earliest",
        consumer_group_instance_id=options.instance_id,
        # Faust creates its own topics (the assignor's leader topic, the cache changelog) with
        # replication 1 by default, which managed clusters refuse or lose with a broker.
        topic_replication_factor=options.replication_factor,
        # Faust's assignor asserts that an assignment names this worker's canonical URL
        # (web host and port by default); a static member that rejoins gets its previous
        # assignment back, so with another --web-port its coordinator died. The URL only
        # identifies the worker here (no table routing), so with an id it is the id.
        **stable_url(options.instance_id),
        broker_session_timeout=options.session_timeout,
        producer_acks=-1,
        key_serializer="raw",
        value_serializer="raw",
        stream_buffer_maxsize=max(4096, options.batch_size * 2),
        # A fetch hands over at most --batch-size leads, and a partition's fetch is kept
        # small: aiokafka drains one partition's fetched records before the next, so with
        # Faust's 1 MiB a backlog was worked one partition at a time, and unpacking a big
        # fetch held the loop long enough to bunch rate-limited sends (make bench, P3).
        broker_max_poll_records=options.batch_size,
        consumer_max_fetch_size=256 * 1024,
        # Outputs go as one record batch per partition and write (agents.output); with
        # Faust's 16 KiB a write of 500 leads made several batches per partition, and each
        # waited for the one before it to leave.
        producer_max_batch_size=256 * 1024,
        # A lead waiting in a batch window is legitimately unacked for the whole window.
        broker_commit_livelock_soft_timeout=max(300.0, 2 * longest_window(flow)),
    )
    app.summary = started_line(flow, options)
    app.shutdown_grace = options.shutdown_grace
    metrics = Metrics(registry)
    guards = Guards(flow, metrics)
    client = HttpClient()
    cache: ResponseCache = InMemoryCache(policy=flow.cache_policy)
    if any(step.caches for step in flow.steps):
        # Every worker holds the whole cache (a cache key is not the lead's key), and
        # the changelog brings it back after a restart.
        cache = TableCache(
            app.GlobalTable(  # bytes in, bytes out: the app's serializers are "raw"
                "response-cache", key_type=bytes, value_type=bytes, partitions=1, use_partitioner=True,
                # Compaction only cleans closed segments (the broker's default: 1 GiB or 7 days).
                extra_topic_configs={"segment.ms": str(3600 * 1000)},
            ),
            flow.cache_policy,  # integrations.NAME.cache.max_entries and the steps' cache: ages
            CacheMetrics(metrics, flow.name),  # leadstreams_cache_entries, _evictions_total
        )
    activity = ActivityLog()
    runner = FlowRunner(flow, client, metrics, guards, cache, batch_windows=True, activity=activity)
    pipeline = LeadPipeline(runner, metrics, options.max_lead_bytes, options.max_output_bytes)
    topics = {Destination.ENRICHED: flow.topics.enriched, Destination.ERRORS: flow.topics.errors}
    writer = OutputWriter(FaustProducerBatches(app.producer), topics, flow.name, metrics)
    observer = BatchObserver(app, metrics, flow.name, writer.topic_of)

    def raw_topic(name: str) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    lead_topic = raw_topic(flow.topics.input)
    app.intake = intake = LeadIntake(app, flow.topics.input, options.batch_size)

    @app.agent(lead_topic, name="leads")
    async def process_leads(stream: faust.StreamT) -> None:
        """The stream stays unused: the consumer hands this topic's fetches to ``intake``
        (agents.intake says why). The agent owns the lead loop's life: start and drain."""

        def process(message: faust.types.Message) -> Coroutine[Any, Any, Output]:  # no extra coroutine
            return pipeline.process(message.value, source_of(message))

        app.leads = leads = LeadLoop(process, app.consumer, writer, observer, options.max_in_flight)
        helpers = [asyncio.ensure_future(leads.write_forever())]
        if any(step.batch for step in flow.steps):
            helpers.append(asyncio.ensure_future(close_windows_on_handover(app, runner.batcher)))
        for helper in helpers:
            helper.add_done_callback(exit_if_it_fails)
        intake.attach(leads)
        app.topics.add(lead_topic)  # subscribe, as iterating the stream would
        try:
            await asyncio.Future()  # until the agent is stopped
        finally:
            intake.detach()
            runner.batcher.stop_windowing()  # leads still arriving at a batch step go at once
            flushing = asyncio.ensure_future(runner.batcher.close_all())
            await leads.drain(options.shutdown_grace)  # the grace covers the flushed batches too
            flushing.cancel()
            for helper in helpers:
                helper.cancel()
            await client.close()

    if flow.delayed_retry is not None and flow.topics.retry:
        for delay, topic in tier_topics(flow.topics.retry, flow.delayed_retry).items():
            add_retry_agent(app, raw_topic(topic), delay, pipeline, writer, observer, options)

    readiness = Readiness(
        producer_connected=lambda: producer_connected(app.producer),
        last_fetch=lambda: last_fetch_time(app.consumer),
        held_back=app.fetch_held_back_at,  # back-pressure from --max-in-flight is not Kafka's silence
    )
    app.kafka_reachable = readiness.producer_connected
    watchdog = LoopWatchdog(options.blocked_after)
    one_partition = 1 / options.input_partitions if options.input_partitions else 1.0
    if options.input_partitions:
        # Until Faust tells us what we own (its signal comes after fetching has resumed),
        # take one partition's share: every worker that sends owns at least one partition,
        # so the group cannot exceed the limit while a rebalance settles.
        guards.set_share(min(one_partition, 1.0))

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: faust.App, revoked: set[faust.types.TP], **kwargs: object) -> None:
        readiness.partitions_revoked()
        if options.input_partitions:
            guards.set_share(min(one_partition, 1.0))
        if ours := partition_list(revoked):
            log.info("partitions revoked (rebalance or stop): %s", ours)

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: faust.App, assigned: set[faust.types.TP], **kwargs: object) -> None:
        owned = sum(1 for tp in assigned if tp.topic == flow.topics.input)
        readiness.partitions_assigned(owned)
        share = ""
        if options.input_partitions:
            guards.set_share(min(max(owned, 1) / options.input_partitions, 1.0))
            share = f" (rate limits: this worker owns {owned}/{options.input_partitions} input partitions)"
        log.info("assigned partitions: %s%s", partition_list(assigned) or "none", share)

    @app.task
    async def probe_broker() -> None:
        """A metadata request over the producer's connection every few seconds (/ready)."""
        await readiness.probe_forever(lambda: aiokafka_producer(app.producer).client.fetch_all_metadata())

    @app.task
    async def watch_the_loop() -> None:
        """The loop beats; a thread notices when it stops beating (/healthz, agents.health)."""
        watchdog.start()
        try:
            await watchdog.beat_forever()
        finally:
            watchdog.stop()

    @app.task
    async def log_activity() -> None:
        """Partner failures and flow stats every minute at info level (streams.activity)."""
        await activity.log_every(60.0)

    @app.task
    async def settle_garbage_collector() -> None:
        """What exists once the worker runs lives as long as it: keep it out of the cyclic
        collector, whose full passes over it paused the event loop for up to ~90 ms and
        bunched sends the rate limiter had spaced (make bench, P3); and collect the young
        generation less often (thousands of leads in flight allocate fast). And fix glibc's
        malloc thresholds, or the memory of a few large leads stays with the process
        (agents.memory; make bench, P5)."""
        fix_malloc_thresholds()
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)

    @app.page("/healthz")
    async def health_page(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
        """Liveness: the worker's event loop answers, and was not blocked lately (agents.health)."""
        reasons = watchdog.reasons()
        if reasons:
            return web.json({"status": "unhealthy", "flow": flow.name, "reasons": reasons}, status=503)
        return web.json({"status": "ok", "flow": flow.name})

    @app.page("/ready")
    async def ready_page(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
        """Readiness: assigned, producer connected, a fetch answered lately (agents.readiness)."""
        reasons = readiness.reasons()
        if reasons:
            return web.json({"status": "not ready", "flow": flow.name, "reasons": reasons}, status=503)
        return web.json({"status": "ready", "flow": flow.name})

    @app.page("/metrics")
    async def metrics_page(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
        return web.bytes(generate_latest(registry), content_type="text/plain")

    return app


def add_retry_agent(
    app: faust.App,
    channel: faust.TopicT,
    delay: float,
    pipeline: LeadPipeline,
    writer: OutputWriter,
    observer: BatchObserver,
    options: WorkerOptions,
) -> None:
    """The agent of one retry tier: waits until its batch is due, then re-runs the leads.
    On shutdown while waiting, the batch is put back on its topic (it would be acked)."""

    @app.agent(channel, name=f"retry-{tier_label(delay)}")
    async def retry_leads(stream: faust.StreamT) -> None:
        async for events in stream.take_events(options.batch_size, within=options.batch_within):
            states = [retry_state(event) for event in events]
            if not await wait_until(max(state.due for state in states), app):
                await writer.write_all([requeued(event, channel.get_topic_name()) for event in events])
                continue

            work = functools.partial(handle, pipeline, writer, observer, events, states)
            await run_batch(work, options.shutdown_grace)


async def handle(
    pipeline: LeadPipeline,
    writer: OutputWriter,
    observer: BatchObserver,
    events: Sequence[faust.EventT],
    states: Sequence[RetryState | None] | None = None,
) -> None:
    """Run the batch's leads concurrently and write their outputs (acknowledged)."""
    observer.fetched(len(events))
    states = states or [None] * len(events)
    outputs = await asyncio.gather(
        *(
            pipeline.process(event.message.value, source_of(event.message), state)
            for event, state in zip(events, states, strict=True)
        )
    )
    await writer.write_all(outputs)
    observer.written([event.message for event in events], outputs)


async def close_windows_on_handover(app: faust.App, batcher: Batcher) -> None:
    """Before Faust commits and lets partitions go (rebalance, stop) it suspends its flow
    control and waits for every taken lead to be acked, so open batch windows are closed
    at once then. Polled: Faust offers no awaitable for the start of a revocation."""
    while True:
        await asyncio.sleep(0.1)
        handing_over = app.should_stop or not app.flow_control.is_active()  # suspended: revoking
        if handing_over and batcher.pending:
            log.info("closing open batch windows (%d leads): partitions are handed over", batcher.pending)
            await batcher.close_all()


def started_line(flow: Flow, options: WorkerOptions) -> str:
    topics = flow.topics
    retry = f", retries via {topics.retry}.*" if flow.delayed_retry is not None and topics.retry else ""
    base = f"http://{options.web_host}:{options.web_port}"
    return (f"flow {flow.name!r}: {topics.input} -> {topics.enriched} / {topics.errors}{retry}; "
            f"{base}/healthz, {base}/ready, {base}/metrics")  # fmt: skip


def partition_list(tps: set[faust.types.TP]) -> str:
    """``leads.incoming[0,1,3]``, one group per topic; Faust's internal topics left out."""
    by_topic: dict[str, list[int]] = {}
    for tp in tps:
        if "__assignor" not in tp.topic:
            by_topic.setdefault(tp.topic, []).append(tp.partition)
    return " ".join(
        f"{topic}[{','.join(map(str, sorted(parts)))}]" for topic, parts in sorted(by_topic.items())
    )


def faust_credentials(kafka: KafkaConnection) -> faust.types.auth.CredentialsT | None:
    """The connection as Faust's credentials (used for its consumer and producer)."""
    if kafka.security_protocol.startswith("SASL_"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password,
            mechanism=kafka.sasl_mechanism,
            ssl_context=kafka.ssl_context(),
        )
    if kafka.security_protocol == "SSL":
        return faust.SSLCredentials(kafka.ssl_context())
    return None


def stable_url(instance_id: str | None) -> dict[str, str]:
    if instance_id is None:
        return {}
    return {"canonical_url": f"http://leadstreams.invalid/instance/{quote(instance_id, safe='')}"}


def longest_window(flow: Flow) -> float:
    return max((step.batch.window for step in flow.steps if step.batch is not None), default=0.0)


async def run_batch(work: Callable[[], Awaitable[None]], grace: float) -> None:
    """Run a batch to completion before take_events may ack it. A clean stop lets the
    current batch finish (see test_shutdown_mid_batch_loses_no_lead); if the agent is
    cancelled instead, take_events would ack the batch as the body exits, so its
    outputs must be written first, or the process must exit uncommitted."""
    batch = asyncio.ensure_future(work())
    try:
        await asyncio.shield(batch)
    except asyncio.CancelledError:
        try:
            await asyncio.wait_for(asyncio.shield(batch), grace)
        except (TimeoutError, asyncio.CancelledError):
            log.critical("in-flight batch not written within %.0fs of shutdown; exiting uncommitted", grace)
            os._exit(EXIT_OUTPUT_FAILED)
        raise


async def wait_until(due: float, app: faust.App) -> bool:
    """Sleep until ``due`` (unix time); False if the app started stopping meanwhile."""
    while (remaining := due - time.time()) > 0:
        if app.should_stop:
            return False
        await asyncio.sleep(min(remaining, 0.5))  # wake up to notice a shutdown
    return not app.should_stop


def source_of(message: faust.types.Message) -> Source:
    return Source(message.topic, message.partition, message.offset)


def retry_state(event: faust.EventT) -> RetryState:
    return RetryState.from_headers(event.message.headers or [], source_of(event.message))


def requeued(event: faust.EventT, topic: str) -> Output:
    headers = event.message.headers or []
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
    return Output(Destination.RETRY, event.message.key or b"", event.message.value or b"", "requeued",
                  topic=topic, headers=pairs)  # fmt: skip
