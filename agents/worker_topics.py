"""A flow's topics, made (unless --no-create-topics) and described before it runs: at the
worker's start for every flow, and for a flow added live."""

from __future__ import annotations

import logging

from agents.kafka_connection import KafkaConnection
from agents.kafka_io import broker_replication_factor, ensure_topics, partition_counts
from agents.worker_options import WorkerOptions
from streams.flow import Flow
from streams.flow_files import read_topics, written_topics

log = logging.getLogger("leadstreams.worker")

# What fewer partitions than asked cost, by role, and what adding some does.
READ = "at most {count} worker(s) can share it (once more are added, a lead id may run out of order once)"
WRITTEN = "at most {count} consumer(s) of a group can read it in parallel"


class TopicsMissing(Exception):
    """Topics absent with --no-create-topics (the message names them)."""


def worker_topics(flow: Flow) -> dict[str, str]:
    """The topics a worker of ``flow`` reads or writes (input, enriched, errors, retry tiers,
    notifications), each with what fewer partitions than asked would cost."""
    read, written = read_topics(flow), written_topics(flow)
    # In the order people read them (the "created topics" line): input, outputs, the rest.
    return {read[0]: READ, **dict.fromkeys(written[:2], WRITTEN), **dict.fromkeys(read[1:], READ),
            **dict.fromkeys(written[2:], WRITTEN)}  # fmt: skip


async def prepare_topics(flow: Flow, options: WorkerOptions) -> dict[str, int]:
    """Each of the flow's topics' partition count, once made; a WARNING for each existing
    topic with fewer partitions than asked. Raises TopicsMissing, or Kafka's refusal."""
    kafka = KafkaConnection.of(options.kafka)
    roles = worker_topics(flow)
    names = list(roles)
    if options.create_topics:
        replication = options.replication_factor or await broker_replication_factor(kafka)
        created = await ensure_topics(
            kafka, names, options.partitions, replication, dict(options.topic_configs)
        )
        if created:
            log.info("created topics: %s", ", ".join(created))
    counts = await partition_counts(kafka, names)
    missing = [name for name in names if name not in counts]
    # (a broker that creates topics on use would make them with its defaults)
    if missing and not options.create_topics:
        absent = ", ".join(missing)
        raise TopicsMissing(f"flow {flow.source_file}: no topic {absent} on the broker: create it, "
                            "or let the worker (drop --no-create-topics)")  # fmt: skip
    if options.create_topics:
        for name in names:
            if counts.get(name, options.partitions) < options.partitions:
                log.warning(
                    "%s", fewer_partitions(name, counts[name], options.partitions, roles[name], kafka)
                )
    return counts


def fewer_partitions(name: str, count: int, wanted: int, role: str, kafka: KafkaConnection) -> str:
    """The WARNING for a topic that existed with fewer partitions than --partitions."""
    return (
        f"topic {name} has {count} partition(s), fewer than --partitions {wanted}: "
        f"{role.format(count=count)}. Add partitions with kafka-topics.sh --bootstrap-server "
        f"{kafka.bootstrap} --alter --topic {name} --partitions {wanted}, or pass --partitions {count}"
    )
