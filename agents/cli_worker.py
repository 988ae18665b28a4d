"""The ``worker`` command: checks what it can before contacting Kafka, makes the flow's
topics, then runs the Faust worker."""

from __future__ import annotations

import logging
import logging.config
import os
from dataclasses import replace
from typing import Any

import click

from agents.cli_common import EXIT_INVALID_FLOW, LOOPBACK_OPTION, load_or_exit, local_partners
from agents.cli_console import console_token_or_exit, listen_or_exit
from agents.cli_errors import EXIT_USAGE, fail, say
from agents.cli_kafka import kafka_call, kafka_options
from agents.kafka_connection import KafkaConnection
from agents.kafka_io import broker_replication_factor
from agents.topic_names import topic_name_problem
from agents.web_console.token import ConsoleToken
from agents.worker_options import EXACTLY_ONCE, GUARANTEES
from agents.worker_topics import TopicsMissing, worker_topics
from streams.flow import MissingTopics, require_topics
from streams.flow_files import FlowFiles, load_flow_files
from streams.problems import Problem

LOGLEVELS = ("debug", "info", "warning", "error", "critical")


def _prepare_worker(arguments: dict[str, Any]) -> dict[str, Any]:
    """What a worker checks before it contacts Kafka: logging set up (so that every line
    after this one is a log record: JSON with --log-format json), the flows, their topic
    names, and that the web port is free — a mistake there costs no wait for a broker
    and leaves no topics behind. One flow file with problems stops the start (exit 2); among
    many, its flow does not run (it is shown on /flows) and the others start."""
    from agents.logs import logging_config

    logging.config.dictConfig(
        logging_config(arguments["log_format"], arguments["loglevel"], arguments["log_bodies"])
    )
    say.use(logging.getLogger("leadstreams.worker"), records_only=arguments["log_format"] == "json")
    paths: tuple[str, ...] = arguments["paths"]
    single = len(paths) == 1 and not os.path.isdir(paths[0])
    scan = FlowFiles(flows={paths[0]: load_or_exit(paths[0])}) if single else load_flow_files(paths)
    if not single and arguments["group_id"] is None:
        fail("more than one flow file (or a directory) needs --group-id NAME: the consumer group every "
             "worker running these flows joins (env LEADSTREAMS_GROUP_ID)", EXIT_USAGE)  # fmt: skip
    for path, flow in list(scan.flows.items()):
        if flow.topics is None and single:
            try:
                require_topics(flow)  # (a flow for try/test/library use may leave them out)
            except MissingTopics as exc:
                fail(str(exc), EXIT_INVALID_FLOW)
        problem = "the worker needs `topics:` in the flow file" if flow.topics is None else None
        exit_code = EXIT_INVALID_FLOW
        if problem is None:
            exit_code = EXIT_USAGE
            problem = next(filter(None, map(topic_name_problem, worker_topics(flow))), None)
        if problem is None:
            continue
        if single:
            fail(f"flow {path}: {problem}", exit_code)
        scan.problems[path] = [Problem(path, 1, "topics", problem)]
        del scan.flows[path]
    for path, problems in sorted(scan.problems.items()):
        for found in problems:
            say.plain(str(found), logging.ERROR)
        say.plain(f"{len(problems)} problem(s) in {path}: its flow does not run until it is fixed",
                  logging.ERROR)  # fmt: skip
    if not scan.flows:
        fail(f"no flow to run in {' '.join(paths)}", EXIT_INVALID_FLOW)
    if arguments["allow_loopback"]:  # said first, before any wait for a broker
        say(logging.WARNING, "--allow-loopback (LEADSTREAMS_ALLOW_LOOPBACK) is on: every integration may "
            "reach loopback and private addresses. For development only, never in production")  # fmt: skip
    listen_or_exit(arguments["web_host"], arguments["web_port"], "--web-host", "--web-port")
    return {"scan": scan, "console_token": console_token_or_exit()}


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@kafka_options(broker_wait=60.0, prepare=_prepare_worker)
@click.option("--web-host", default="127.0.0.1", show_default=True, help="Host of /metrics.")
@click.option(
    "--web-port",
    default=6066,
    type=click.IntRange(1, 65535),
    show_default=True,
    help="Port of /metrics (one per worker).",
)
@click.option(
    "--console",
    "test_console",
    is_flag=True,
    envvar="LEADSTREAMS_CONSOLE",
    help="Turn on the web console's test console (it sends real requests to the partners); the page "
    "at / needs the token printed at start or set in LEADSTREAMS_CONSOLE_TOKEN (env LEADSTREAMS_CONSOLE=1).",
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
@click.option(
    "--group-id",
    envvar="LEADSTREAMS_GROUP_ID",
    default=None,
    help="Consumer group of the worker's flows (one flow file: default leadstreams-FLOWNAME; "
    "several files or a directory: required; env LEADSTREAMS_GROUP_ID).",
)
@click.option(
    "--watch/--no-watch",
    default=True,
    show_default=True,
    help="Reload when a flow file or directory changes (also: SIGHUP, POST /flows/reload).",
)
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
    paths: tuple[str, ...],
    scan: FlowFiles,
    console_token: ConsoleToken,
    kafka: KafkaConnection,
    web_host: str,
    web_port: int,
    test_console: bool,
    batch_size: int,
    max_in_flight: int,
    group_id: str | None,
    watch: bool,
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
    """Run the flows of PATHS (flow files, directories of them) in one worker: consume, call
    APIs, produce results; reload a flow when its file changes."""
    from prometheus_client import CollectorRegistry

    from agents.app import WorkerOptions, create_app
    from agents.logs import mask_log_records
    from agents.worker_run import run_worker
    from agents.worker_topics import prepare_topics
    from streams.masking import Masker

    flows = scan.flows
    mask_log_records(Masker([secret for flow in flows.values() for secret in flow.secrets]))
    local_partners(allow_loopback)
    if replication_factor is None:
        replication_factor = kafka_call(
            broker_replication_factor(kafka), "to describe the broker's config (pass --replication-factor)"
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
        max_lead_bytes=max_lead_bytes,
        max_output_bytes=max_output_bytes,
        partitions=partitions,
        topic_configs=_topic_configs(topic_configs),
        create_topics=create_topics,
        watch=watch,
        console=test_console,
        console_token=console_token,
    )
    counts: dict[str, int] = {}
    for flow in flows.values():
        try:
            hint = ("to create the flow's topics (or create them, --no-create-topics)" if create_topics
                    else "to describe the flow's topics")  # fmt: skip
            hint = hint if len(flows) == 1 else f"{hint} ({flow.name})"
            made = kafka_call(prepare_topics(flow, options), hint)
            counts.update(made)
        except TopicsMissing as exc:
            fail(str(exc), EXIT_USAGE)
    options = replace(options, input_partitions=counts)
    app = create_app(flows, options, CollectorRegistry(), paths=list(paths))
    app.flows.rejected_at_start(scan)
    names = ", ".join(repr(flow.name) for flow in flows.values())
    plural = "s" if len(flows) > 1 else ""
    say(logging.INFO, f"starting the worker for flow{plural} {names}: joining consumer group {app.conf.id!r}")
    run_worker(app, loglevel, log_format, log_bodies)


def _topic_configs(pairs: tuple[str, ...]) -> dict[str, str]:
    configs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not (sep and key.strip() and value.strip()):
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--topic-config")
        configs[key.strip()] = value.strip()
    return configs
