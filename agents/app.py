"""The Faust app of a worker: wires the engine to Kafka. Each part is its own module:
settings (agents.faust_settings), the lead agent (agents.lead_agent), the retry tiers
(agents.retry_agents), the rebalance listener (agents.rebalance), the web pages
(agents.web_pages)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from agents.faust_seam import FaustRecordBatches, LeadApp, last_fetch_time, producer_connected
from agents.faust_settings import OUTPUT_BATCH_BYTES, app_id, faust_settings, settle_garbage_collector
from agents.health import LoopWatchdog
from agents.kafka_connection import KafkaConnection
from agents.lead_agent import add_lead_agent
from agents.notification_agents import add_notification_agents
from agents.observe import LeadObserver
from agents.output import OutputWriter
from agents.readiness import Readiness
from agents.rebalance import Rebalance
from agents.retry_agents import add_retry_agents
from agents.shared_client import SharedClient
from agents.table_cache import TableCache
from agents.transactions import TransactionalProducer, transactional_id
from agents.web_pages import add_web_pages
from agents.worker_options import WorkerOptions
from streams.activity import ActivityLog
from streams.cache import InMemoryCache, ResponseCache
from streams.flow import Flow, require_topics
from streams.http_client import HttpClient
from streams.metrics import CacheMetrics, Metrics
from streams.pipeline import Destination, LeadPipeline
from streams.protections import Protections
from streams.runner import FlowRunner

__all__ = ["WorkerOptions", "create_app"]


def create_app(flow: Flow, options: WorkerOptions, registry: CollectorRegistry) -> LeadApp:
    """Raises MissingTopics for a flow without ``topics:`` (the CLI says so in one line first)."""
    require_topics(flow)
    app = LeadApp(app_id(flow, options), **faust_settings(flow, options))
    app.summary = started_line(flow, options)
    app.shutdown_grace = options.shutdown_grace
    metrics = Metrics(registry)
    protections = Protections(flow, metrics)
    client = HttpClient()
    activity = ActivityLog()
    runner = FlowRunner(flow, client, metrics, protections, response_cache(app, flow, metrics),
                        batch_windows=True, activity=activity, queue_notifications=True,
                        max_notification_bytes=options.max_output_bytes)  # fmt: skip
    pipeline = LeadPipeline(runner, metrics, options.max_lead_bytes, options.max_output_bytes)
    writer = output_writer(app, flow, options, metrics)
    observer = LeadObserver(app, metrics, flow.name, writer.topic_of)
    shared = SharedClient(client)  # closed once every agent that calls partners stopped
    add_lead_agent(app, flow.topics.input, runner, shared, pipeline, writer, observer, options)
    add_retry_agents(app, flow, pipeline, shared, writer, observer, options)
    add_notification_agents(app, flow, runner.services, shared, writer, metrics, options)

    readiness = Readiness(
        producer_connected=lambda: producer_connected(app.producer),
        last_fetch=lambda: last_fetch_time(app.consumer),
        held_back=app.fetch_held_back_at,  # back-pressure from --max-in-flight is not Kafka's silence
    )
    app.kafka_reachable = readiness.producer_connected
    batch_windows = runner.batcher if any(step.batch for step in flow.steps) else None
    Rebalance(flow.topics.input, options.input_partitions, protections, readiness, batch_windows).listen(app)
    add_web_pages(app, flow.name, readiness, LoopWatchdog(options.blocked_after), registry)

    @app.task
    async def log_activity() -> None:
        """Partner failures and flow stats every minute at info level (streams.activity)."""
        await activity.log_every(60.0)

    app.task(settle_garbage_collector)  # agents.faust_settings says why
    return app


def output_writer(app: LeadApp, flow: Flow, options: WorkerOptions, metrics: Metrics) -> OutputWriter:
    """Through Faust's producer, or under exactly-once the worker's transactional one: then a
    refused write is not sent again in the same transaction, it aborts it (agents.transactions)."""
    topics = {Destination.ENRICHED: flow.topics.enriched, Destination.ERRORS: flow.topics.errors}
    if not options.exactly_once:
        return OutputWriter(FaustRecordBatches(app.producer), topics, flow.name, metrics)
    txn_id = transactional_id(app.conf.id, options.instance_id)
    producer = TransactionalProducer(KafkaConnection.of(options.kafka), txn_id, OUTPUT_BATCH_BYTES,
                                     metrics, flow.name)  # fmt: skip
    app.transactions = producer

    @app.task
    async def start_transactions() -> None:
        """At once, not at the first write: it aborts what a predecessor with this id left open."""
        await producer.start()

    return OutputWriter(producer, topics, flow.name, metrics, attempts=1, gate=producer.gate,
                        give_up=producer.abort_and_exit)  # fmt: skip


def response_cache(app: LeadApp, flow: Flow, metrics: Metrics) -> ResponseCache:
    """In memory, unless a step caches: then a table every worker holds whole (a cache key
    is not the lead's key), whose changelog brings it back after a restart."""
    if not any(step.caches for step in flow.steps):
        return InMemoryCache(policy=flow.cache_policy)
    return TableCache(
        app.GlobalTable(  # bytes in, bytes out: the app's serializers are "raw"
            "response-cache",
            key_type=bytes,
            value_type=bytes,
            partitions=1,
            use_partitioner=True,
            # Compaction only cleans closed segments (the broker's default: 1 GiB or 7 days).
            extra_topic_configs={"segment.ms": str(3600 * 1000)},
        ),
        flow.cache_policy,  # integrations.NAME.cache.max_entries and the steps' cache: ages
        CacheMetrics(metrics, flow.name),  # leadstreams_cache_entries, _evictions_total
    )


def started_line(flow: Flow, options: WorkerOptions) -> str:
    topics = flow.topics
    retry = f", retries via {topics.retry}.*" if flow.delayed_retry is not None and topics.retry else ""
    if topics.notifications and any(step.notify for step in flow.steps):
        retry += f", notifications via {topics.notifications} (attempts: {topics.notifications}.results)"
    retry += f"; {options.guarantee}"
    base = f"http://{options.web_host}:{options.web_port}"
    return (f"flow {flow.name!r}: {topics.input} -> {topics.enriched} / {topics.errors}{retry}; "
            f"{base}/healthz, {base}/ready, {base}/metrics")  # fmt: skip
