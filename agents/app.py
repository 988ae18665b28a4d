"""The Faust app of a worker: wires the engine to Kafka for every flow it runs. Each part is
its own module: settings (agents.faust_settings), one flow's life (agents.flow_worker: its
lead agent, retry tiers, notifications), the flows and their live changes (agents.flow_set,
agents.flow_watch), the rebalance listener (agents.rebalance), the web pages (agents.web_pages).

Every flow of a worker shares its one consumer group, one consumer, one (transactional)
producer, one HTTP client and one web server: a flow costs its objects, not connections or
threads (docs/architecture.md, "Many flows in one worker", says why and what it measured)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from prometheus_client import CollectorRegistry

from agents.faust_seam import LeadApp, last_fetch_time, producer_connected, resubscribe_quickly
from agents.faust_settings import OUTPUT_BATCH_BYTES, app_id, faust_settings, settle_garbage_collector
from agents.flow_set import FlowSet, TopicsUnavailable
from agents.flow_watch import watch_flows
from agents.flow_worker import FlowWorker, WorkerParts
from agents.health import LoopWatchdog
from agents.intake import LeadIntake
from agents.kafka_connection import KafkaConnection
from agents.readiness import Readiness
from agents.rebalance import Rebalance
from agents.shared_client import SharedClient
from agents.table_cache import TableCache
from agents.transactions import TransactionalProducer, transactional_id
from agents.web_console.on_worker import add_console
from agents.web_console.token import ConsoleToken
from agents.web_pages import add_flow_pages, add_web_pages
from agents.worker_options import WorkerOptions
from agents.worker_topics import prepare_topics
from streams.activity import ActivityLog
from streams.cache import InMemoryCache, ResponseCache
from streams.flow import Flow, require_topics
from streams.http_client import HttpClient
from streams.metrics import CacheMetrics, Metrics
from streams.recent_problems import RecentProblems

__all__ = ["WorkerOptions", "create_app"]

log = logging.getLogger("leadstreams.flows")


def create_app(
    flows: Flow | Mapping[str, Flow],
    options: WorkerOptions,
    registry: CollectorRegistry,
    paths: list[str] | None = None,
) -> LeadApp:
    """``flows`` by file (or one flow); ``paths``: what the worker watches and rescans on a
    reload (default: the flows' files). Raises MissingTopics for a flow without ``topics:``."""
    by_path = {flows.source_file: flows} if isinstance(flows, Flow) else dict(flows)
    for flow in by_path.values():
        require_topics(flow)
    first = list(by_path.values())
    app = LeadApp(app_id(first, options), **faust_settings(first, options))
    # The CLI's token (checked there), or LEADSTREAMS_CONSOLE_TOKEN's, or a new one.
    token = options.console_token or ConsoleToken.from_environment(os.environ)
    app.summary = f"{started_line(first, options)}; {console_line(options, token)}"
    app.shutdown_grace = options.shutdown_grace
    resubscribe_quickly(app)
    metrics = Metrics(registry)
    client = HttpClient()
    named = list(by_path) if paths is None else paths
    one_file = len(named) == 1 and named[0] in by_path  # (a directory of one flow is not one file)
    label = first[0].name if one_file else app.conf.id  # a transaction holds every flow's outputs
    parts = WorkerParts(
        app=app,
        options=options,
        metrics=metrics,
        client=client,
        shared=SharedClient(client),  # closed once every agent that calls partners stopped
        activity=ActivityLog(),
        intake=LeadIntake(app, options.fetch_size),
        transactions=transactional_producer(app, options, metrics, label),
        problems=RecentProblems(),
    )
    app.intake = app.leads = parts.intake
    flow_set = FlowSet(paths or list(by_path), metrics)
    tables = {flow.name: response_table(app, flow, metrics, one_file) for flow in first if caches(flow)}
    partitions = options.input_partitions or {}
    for path, flow in by_path.items():
        cache = tables.get(flow.name)  # (not `or`: an empty cache is falsy, it has a length)
        if cache is None:
            cache = InMemoryCache(policy=flow.cache_policy)
        worker = FlowWorker(path, flow, parts, cache, partitions.get(require_topics(flow).input))
        worker.add_agents()
        flow_set.add(worker)

    async def new_flow(path: str, flow: Flow) -> FlowWorker:
        """A flow added live: its topics made, its agents started (its cache in memory only:
        Faust's tables exist from the start)."""
        try:
            counts = await prepare_topics(flow, options)
        except Exception as exc:
            raise TopicsUnavailable(str(exc)) from exc
        cache: ResponseCache | None = tables.get(flow.name)
        if cache is None:
            if caches(flow):
                log.warning("flow %r caches responses in memory until the worker restarts (its table is "
                            "made at the start)", flow.name)  # fmt: skip
            cache = InMemoryCache(policy=flow.cache_policy)
        worker = FlowWorker(path, flow, parts, cache, counts.get(require_topics(flow).input))
        # Committed first: the subscription change's rebalance cannot commit at-least-once's
        # offsets (agents.faust_seam.consumer._commit_plain), so it finds as little as possible.
        await app.consumer.commit()
        await worker.start_live()
        return worker

    async def close_unused_pools() -> None:
        """After a reload: the pools of integrations no flow runs any more (changed, removed)."""
        running = [worker.flow for worker in flow_set.running()]
        await client.keep_only(step.integration for flow in running for step in flow.steps)

    flow_set.app = app
    flow_set.new_flow = new_flow
    flow_set.after_change = close_unused_pools
    app.flows = flow_set

    readiness = Readiness(
        producer_connected=lambda: producer_connected(app.producer),
        last_fetch=lambda: last_fetch_time(app.consumer),
        held_back=app.fetch_held_back_at,  # back-pressure from --max-in-flight is not Kafka's silence
    )
    app.kafka_reachable = readiness.producer_connected
    Rebalance(flow_set.running, readiness).listen(app)
    name = first[0].name if len(by_path) == 1 else f"{len(by_path)} flows"
    add_web_pages(app, name, readiness, LoopWatchdog(options.blocked_after), registry)
    add_flow_pages(app, flow_set)
    add_console(app, flow_set, registry, parts.problems, token, options.console)
    watch_flows(app, flow_set, options.watch)

    @app.task
    async def log_activity() -> None:
        """Partner failures and flow stats every minute at info level (streams.activity)."""
        await parts.activity.log_every(60.0)

    app.task(settle_garbage_collector)  # agents.faust_settings says why
    return app


def transactional_producer(
    app: LeadApp, options: WorkerOptions, metrics: Metrics, label: str
) -> TransactionalProducer | None:
    """Under exactly-once the worker's one transactional producer (agents.transactions);
    ``label``: its commit-time metric's ``flow`` (a transaction holds every flow's outputs)."""
    if not options.exactly_once:
        return None
    txn_id = transactional_id(app.conf.id, options.instance_id)
    kafka = KafkaConnection.of(options.kafka)
    producer = TransactionalProducer(kafka, txn_id, OUTPUT_BATCH_BYTES, metrics, label)
    app.transactions = producer

    @app.task
    async def start_transactions() -> None:
        """At once, not at the first write: it aborts what a predecessor with this id left open."""
        await producer.start()

    return producer


def caches(flow: Flow) -> bool:
    return any(step.caches for step in flow.steps)


def response_table(app: LeadApp, flow: Flow, metrics: Metrics, only_flow: bool) -> ResponseCache:
    """A table every worker holds whole (a cache key is not the lead's key), whose changelog
    brings it back after a restart: ``response-cache`` for a worker of one flow file (as
    before many flows), ``response-cache-NAME`` for each flow of a worker of many."""
    return TableCache(
        app.GlobalTable(  # bytes in, bytes out: the app's serializers are "raw"
            "response-cache" if only_flow else f"response-cache-{flow.name}",
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


def console_line(options: WorkerOptions, token: ConsoleToken) -> str:
    test = "test console on" if options.console else "test console off (--console)"
    return f"web console {token.page_url(options.web_host, options.web_port)} ({test})"


def started_line(flows: list[Flow], options: WorkerOptions) -> str:
    base = f"http://{options.web_host}:{options.web_port}"
    pages = f"{base}/healthz, {base}/ready, {base}/metrics, {base}/flows"
    if len(flows) > 1:
        return f"{len(flows)} flows ({', '.join(f.name for f in flows)}); {options.guarantee}; {pages}"
    flow = flows[0]
    topics = require_topics(flow)
    retry = f", retries via {topics.retry}.*" if flow.delayed_retry is not None and topics.retry else ""
    if topics.notifications and any(step.notify for step in flow.steps):
        retry += f", notifications via {topics.notifications} (attempts: {topics.notifications}.results)"
    retry += f"; {options.guarantee}"
    return f"flow {flow.name!r}: {topics.input} -> {topics.enriched} / {topics.errors}{retry}; {pages}"
