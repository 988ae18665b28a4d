"""Faust's and aiokafka's settings for a worker, the garbage collector's, and the raw
topics: each tuned value with the measurement or failure that chose it."""

from __future__ import annotations

import gc
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import faust

from agents.kafka_connection import KafkaConnection
from agents.memory import fix_malloc_thresholds
from agents.worker_options import WorkerOptions
from streams.flow import Flow

OUTPUT_BATCH_BYTES = 256 * 1024  # a record batch's size (see producer_max_batch_size below)


def app_id(flows: Sequence[Flow], options: WorkerOptions) -> str:
    """The consumer group: --group-id, or for a worker of one flow file ``leadstreams-NAME``."""
    return options.group_id or f"leadstreams-{flows[0].name}"


def faust_settings(flows: Sequence[Flow], options: WorkerOptions) -> dict[str, Any]:
    """The keyword arguments of the worker's ``LeadApp`` (its id aside)."""
    kafka = KafkaConnection.of(options.kafka)
    return dict(
        broker=[f"kafka://{server.strip()}" for server in kafka.bootstrap.split(",")],
        broker_credentials=faust_credentials(kafka),
        web_host=options.web_host,
        web_port=options.web_port,
        web_bind=options.web_host,
        datadir=options.data_dir or str(Path(tempfile.gettempdir()) / f"{app_id(flows, options)}-data"),
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
        # Under exactly-once each commit is a transaction: read_committed readers see the
        # outputs only then, and a crash replays at most this much (docs/exactly-once-design.md
        # measured the cost of shorter intervals).
        broker_commit_interval=options.commit_interval,
        broker_commit_every=options.commit_count,
        producer_acks=-1,
        key_serializer="raw",
        value_serializer="raw",
        # The other topics' streams (retry tiers, notifications) stop being fetched at 80 % of
        # this and take the rest of a fetch (at most --batch-size) without blocking it: the
        # leads' fetch waits only if a fetch outgrows the last 20 %.
        stream_buffer_maxsize=max(4096, options.fetch_size * 6),
        # A fetch hands over at most --batch-size leads, and a partition's fetch is kept
        # small: aiokafka drains one partition's fetched records before the next, so with
        # Faust's 1 MiB a backlog was worked one partition at a time, and unpacking a big
        # fetch held the loop long enough to bunch rate-limited sends (make bench, P3).
        broker_max_poll_records=options.fetch_size,
        consumer_max_fetch_size=256 * 1024,
        # Outputs go as one record batch per partition and write (agents.output); with
        # Faust's 16 KiB a write of 500 leads made several record batches per partition,
        # and each waited for the one before it to leave.
        producer_max_batch_size=OUTPUT_BATCH_BYTES,
        # A lead waiting in a batch window is legitimately unacked for the whole window.
        broker_commit_livelock_soft_timeout=max(300.0, *(2 * longest_window(flow) for flow in flows)),
    )


async def settle_garbage_collector() -> None:  # an app task, once at the start
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


def raw_topic(app: faust.App, name: str) -> faust.TopicT:
    """A topic of bytes keys and values: the engine parses and serializes leads itself."""
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


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
