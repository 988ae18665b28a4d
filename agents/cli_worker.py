"""The ``worker`` command: checks what it can before contacting Kafka, makes the flow's
topics, then runs the Faust worker."""

from __future__ import annotations

import logging
import logging.config
from typing import Any

import click

from agents.cli_common import EXIT_INVALID_FLOW, LOOPBACK_OPTION, load_or_exit, local_partners
from agents.cli_errors import EXIT_USAGE, fail, port_problem, say
from agents.cli_kafka import kafka_call, kafka_options
from agents.kafka_connection import KafkaConnection
from agents.topic_names import topic_name_problem
from agents.worker_options import EXACTLY_ONCE, GUARANTEES
from streams.flow import Flow, MissingTopics, require_topics

LOGLEVELS = ("debug", "info", "warning", "error", "critical")


def _prepare_worker(arguments: dict[str, Any]) -> dict[str, Any]:
    """What a worker checks before it contacts Kafka: logging set up (so that every line
    after this one is a log record: JSON with --log-format json), the flow, its topic
    names, and that the web port is free — a mistake there costs no wait for a broker
    and leaves no topics behind."""
    from agents.logs import logging_config

    logging.config.dictConfig(
        logging_config(arguments["log_format"], arguments["loglevel"], arguments["log_bodies"])
    )
    say.use(logging.getLogger("leadstreams.worker"), records_only=arguments["log_format"] == "json")
    loaded = load_or_exit(arguments["flow"])
    try:
        require_topics(loaded)  # (a flow for try/test/library use may leave them out)
    except MissingTopics as exc:
        fail(str(exc), EXIT_INVALID_FLOW)
    if arguments["allow_loopback"]:  # said first, before any wait for a broker
        say(logging.WARNING, "--allow-loopback (LEADSTREAMS_ALLOW_LOOPBACK) is on: every integration may "
            "reach loopback and private addresses. For development only, never in production")  # fmt: skip
    for name in worker_topics(loaded):
        problem = topic_name_problem(name)
        if problem is not None:
            fail(f"flow {arguments['flow']}: {problem}", EXIT_USAGE)
    host, port = arguments["web_host"], arguments["web_port"]
    problem = port_problem(host, port)
    if problem is not None:
        fail(f"--web-host {host} --web-port {port}: {problem}", EXIT_USAGE)
    return {"loaded": loaded}


# What fewer partitions than asked cost, by role, and what adding some does.
READ = "at most {count} worker(s) can share it (once more are added, a lead id may run out of order once)"
WRITTEN = "at most {count} consumer(s) of a group can read it in parallel"


def worker_topics(loaded: Flow) -> dict[str, str]:
    """The topics a worker of ``loaded`` reads or writes (input, enriched, errors, retry
    tiers, notifications), each with what fewer partitions than asked would cost."""
    from streams.delayed import tier_topics

    topics = require_topics(loaded)
    roles = {topics.input: READ, topics.enriched: WRITTEN, topics.errors: WRITTEN}
    if loaded.delayed_retry is not None and topics.retry:
        roles.update(dict.fromkeys(tier_topics(topics.retry, loaded.delayed_retry).values(), READ))
    roles.update(notification_topics(loaded))
    return roles


def notification_topics(loaded: Flow) -> dict[str, str]:
    """The queue of ``notify:`` steps, its attempts topic, and the important ones' tiers."""
    from streams.delayed import tier_topics
    from streams.notifications import results_topic, tier_prefix

    queue = loaded.topics.notifications if loaded.topics is not None else None
    notify = [step.notify for step in loaded.steps if step.notify is not None]
    if queue is None or not notify:
        return {}
    roles = {queue: READ, results_topic(queue): WRITTEN}
    if any(spec.important for spec in notify):
        roles.update(dict.fromkeys(tier_topics(tier_prefix(queue), loaded.notification_retry).values(), READ))
    return roles


@click.command()
@click.argument("flow", type=click.Path(dir_okay=False))
@kafka_options(broker_wait=60.0, prepare=_prepare_worker)
@click.option("--web-host", default="127.0.0.1", show_default=True, help="Host of /metrics.")
@click.option(
    "--web-port",
    default=6066,
    type=click.IntRange(1, 65535),
    show_default=True,
    help="Port of /metrics (one per worker).",
)
@click.option("--batch-size", default=500, show_default=True, help="Leads handed over from a fetch at once.")
@click.option(
    "--max-in-flight",
    default=2000,
    type=click.IntRange(min=1),
    show_default=True,
    help="Leads taken and not yet written (running, or waiting in a batch window). At least "
    "max_leads x owned partitions for batch steps, or windows close by time only.",
)
@click.option("--group-id", default=None, help="Consumer group (default leadstreams-FLOWNAME).")
@click.option(
    "--instance-id",
    envvar="LEADSTREAMS_INSTANCE_ID",
    default=None,
    help="Static group membership (group.instance.id, unique in the group): a worker restarted with "
    "the same id takes its partitions back at once instead of after --session-timeout. Use a name "
    "that survives restarts (a StatefulSet pod's name); a worker stopped for good holds its "
    "partitions until the session times out (env LEADSTREAMS_INSTANCE_ID).",
)
@click.option(
    "--session-timeout",
    default=45.0,
    type=click.FloatRange(min=6.0, max=90.0),
    show_default=True,
    help="Seconds without heartbeats before the group gives a worker's partitions to others.",
)
@click.option(
    "--guarantee",
    type=click.Choice(GUARANTEES),
    envvar="LEADSTREAMS_GUARANTEE",
    default=EXACTLY_ONCE,
    show_default=True,
    help="exactly-once: each lead's outputs and its input offset commit in one Kafka transaction "
    "(no lead written twice after a crash; readers must read read_committed). at-least-once: "
    "outputs are written at once, a crash may write a lead twice (env LEADSTREAMS_GUARANTEE).",
)
@click.option(
    "--commit-interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between commits (each a transaction under exactly-once: read_committed readers "
    "see outputs then; a crash replays at most about this much).",
)
@click.option(
    "--commit-count",
    type=click.IntRange(min=1),
    default=5000,
    show_default=True,
    help="Commit sooner, once this many inputs finished since the last commit.",
)
@click.option("--partitions", default=4, show_default=True, help="Partitions for topics it creates.")
@click.option(
    "--replication-factor",
    type=click.IntRange(min=1),
    default=None,
    help="Replicas for topics it creates, Faust's own included (default: the broker's "
    "default.replication.factor).",
)
@click.option(
    "--topic-config",
    "topic_configs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A config for topics it creates, e.g. retention.ms=604800000 (repeatable).",
)
@click.option(
    "--create-topics/--no-create-topics",
    default=True,
    show_default=True,
    help="Create the flow's topics if missing.",
)
@click.option(
    "--max-lead-bytes",
    default=1024 * 1024,
    show_default=True,
    help="Larger input messages go to the errors topic.",
)
@click.option(
    "--max-output-bytes",
    default=1_000_000,
    show_default=True,
    help="An output Kafka would refuse as larger goes to the errors topic as a short event with the "
    "start of the input (Kafka's default limits; raise it with the topics' max.message.bytes).",
)
@click.option(
    "--loglevel",
    type=click.Choice(LOGLEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    help="debug logs every partner request.",
)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--log-bodies", is_flag=True, help="With --loglevel debug, also log request/response bodies.")
@LOOPBACK_OPTION
def worker(
    flow: str,
    loaded: Flow,
    kafka: KafkaConnection,
    web_host: str,
    web_port: int,
    batch_size: int,
    max_in_flight: int,
    group_id: str | None,
    instance_id: str | None,
    session_timeout: float,
    guarantee: str,
    commit_interval: float,
    commit_count: int,
    partitions: int,
    replication_factor: int | None,
    topic_configs: tuple[str, ...],
    create_topics: bool,
    max_lead_bytes: int,
    max_output_bytes: int,
    loglevel: str,
    log_format: str,
    log_bodies: bool,
    allow_loopback: bool,
) -> None:
    """Run the Faust worker for FLOW (consume, call APIs, produce results)."""
    from prometheus_client import CollectorRegistry

    from agents.app import WorkerOptions, create_app
    from agents.logs import mask_log_records
    from agents.worker_run import run_worker
    from streams.masking import Masker

    mask_log_records(Masker(loaded.secrets))
    local_partners(allow_loopback)
    configs = _topic_configs(topic_configs)
    replication_factor, counts = _flow_topics(
        loaded, kafka, partitions, replication_factor, configs, create_topics
    )
    options = WorkerOptions(
        kafka=kafka,
        web_host=web_host,
        web_port=web_port,
        fetch_size=batch_size,
        max_in_flight=max_in_flight,
        group_id=group_id,
        instance_id=instance_id,
        session_timeout=session_timeout,
        guarantee=guarantee,
        commit_interval=commit_interval,
        commit_count=commit_count,
        replication_factor=replication_factor,
        input_partitions=counts.get(require_topics(loaded).input),
        max_lead_bytes=max_lead_bytes,
        max_output_bytes=max_output_bytes,
    )
    app = create_app(loaded, options, CollectorRegistry())
    say(
        logging.INFO,
        f"starting the worker for flow {loaded.name!r}: joining consumer group {app.conf.id!r}",
    )
    run_worker(app, loglevel, log_format, log_bodies)


def _flow_topics(
    loaded: Flow,
    kafka: KafkaConnection,
    partitions: int,
    replication_factor: int | None,
    configs: dict[str, str],
    create: bool,
) -> tuple[int, dict[str, int]]:
    """The flow's topics made (with --create-topics) and described: the replication
    factor used and each topic's partition count; a WARNING for each existing topic with
    fewer partitions than asked."""
    from agents.kafka_io import broker_replication_factor, ensure_topics, partition_counts

    roles = worker_topics(loaded)
    names = list(roles)
    replication_factor = replication_factor or kafka_call(
        broker_replication_factor(kafka), "to describe the broker's config (pass --replication-factor)"
    )
    if create:
        creating = ensure_topics(kafka, names, partitions, replication_factor, configs)
        created = kafka_call(creating, "to create the flow's topics (or create them, --no-create-topics)")
        if created:
            say(logging.INFO, f"created topics: {', '.join(created)}")
    counts = kafka_call(partition_counts(kafka, names), "to describe the flow's topics")
    missing = [name for name in names if name not in counts]
    if missing and not create:  # (a broker that creates topics on use would make them with its defaults)
        fail(f"flow {loaded.source_file}: no topic {', '.join(missing)} on the broker: create it, "
             "or let the worker (drop --no-create-topics)", EXIT_USAGE)  # fmt: skip
    if create:
        for name in names:
            if counts.get(name, partitions) < partitions:
                say(logging.WARNING, _fewer_partitions(name, counts[name], partitions, roles[name], kafka))
    return replication_factor, counts


def _fewer_partitions(name: str, count: int, wanted: int, role: str, kafka: KafkaConnection) -> str:
    """The start's WARNING for a topic that existed with fewer partitions than --partitions."""
    return (
        f"topic {name} has {count} partition(s), fewer than --partitions {wanted}: "
        f"{role.format(count=count)}. Add partitions with kafka-topics.sh --bootstrap-server "
        f"{kafka.bootstrap} --alter --topic {name} --partitions {wanted}, or pass --partitions {count}"
    )


def _topic_configs(pairs: tuple[str, ...]) -> dict[str, str]:
    configs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not (sep and key.strip() and value.strip()):
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--topic-config")
        configs[key.strip()] = value.strip()
    return configs
