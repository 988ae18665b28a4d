"""The ``leadstreams`` command line."""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click
import orjson
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agents.kafka_connection import MECHANISMS, PROTOCOLS, KafkaConfigError, KafkaConnection
from streams.flow import Flow
from streams.loader import load_flow
from streams.problems import FlowFileError

err = Console(stderr=True)
EXIT_INVALID_FLOW = 2
KAFKA_OPTIONS = (
    click.option("--bootstrap", help="Kafka bootstrap servers, host:port[,host:port] "
                 "(env LEADSTREAMS_BOOTSTRAP; default 127.0.0.1:9092)."),
    click.option("--kafka-config", type=click.Path(dir_okay=False), help="A Kafka client properties file "
                 "(Java or librdkafka keys: bootstrap.servers, security.protocol, sasl.mechanism, "
                 "sasl.jaas.config, ssl.truststore.location with type PEM, ...) "
                 "(env LEADSTREAMS_KAFKA_CONFIG)."),
    click.option("--security-protocol", type=click.Choice(PROTOCOLS, case_sensitive=False),
                 help="Default PLAINTEXT (env LEADSTREAMS_KAFKA_SECURITY_PROTOCOL)."),
    click.option("--sasl-mechanism", type=click.Choice(MECHANISMS, case_sensitive=False),
                 help="Default PLAIN with SASL_* (env LEADSTREAMS_KAFKA_SASL_MECHANISM)."),
    click.option("--sasl-username", help="(env LEADSTREAMS_KAFKA_SASL_USERNAME). The password is read from "
                 "LEADSTREAMS_KAFKA_SASL_PASSWORD or --kafka-config, never from the command line."),
    click.option("--ssl-cafile", help="PEM CA certificates to trust (default: the system's; "
                 "env LEADSTREAMS_KAFKA_SSL_CAFILE)."),
    click.option("--ssl-certfile", help="PEM client certificate, for mutual TLS "
                 "(env LEADSTREAMS_KAFKA_SSL_CERTFILE)."),
    click.option("--ssl-keyfile", help="PEM client key (env LEADSTREAMS_KAFKA_SSL_KEYFILE; its password in "
                 "LEADSTREAMS_KAFKA_SSL_KEY_PASSWORD)."),
    click.option("--ssl-check-hostname/--no-ssl-check-hostname", default=None,
                 help="Check the broker's certificate names its host (default on)."),
)  # fmt: skip


def kafka_options(broker_wait: float) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The Kafka connection options on a command, resolved into one ``kafka`` argument
    (options, then LEADSTREAMS_KAFKA_* variables, then --kafka-config), and a first contact
    with the broker before the command runs: one line and exit 3 when it cannot work."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def with_connection(*args: Any, **kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in KAFKA_OPTION_NAMES}
            config_file, wait = given.pop("kafka_config"), given.pop("broker_wait")
            try:
                kwargs["kafka"] = kafka = KafkaConnection.resolve(given, config_file)
            except KafkaConfigError as exc:
                raise click.UsageError(str(exc)) from None
            reach_or_exit(kafka, wait)
            return command(*args, **kwargs)

        wait_option = click.option(
            "--broker-wait",
            type=click.FloatRange(min=0),
            default=broker_wait,
            show_default=True,
            help="Seconds to wait for a broker that refuses connections (not for bad credentials or TLS).",
        )
        for option in (*reversed(KAFKA_OPTIONS), wait_option):
            with_connection = option(with_connection)
        return with_connection

    return decorate


T = TypeVar("T")


def kafka_call(call: Coroutine[Any, Any, T], hint: str) -> T:
    """Run one Kafka request; a refusal (ACLs, policies, bad topic names) is one line, exit 3."""
    from aiokafka.errors import KafkaError

    from agents.kafka_errors import EXIT_KAFKA

    try:
        return asyncio.run(call)
    except KafkaError as exc:
        click.echo(f"error: Kafka refused {hint}: {exc}", err=True)
        sys.exit(EXIT_KAFKA)


def reach_or_exit(kafka: KafkaConnection, wait: float) -> None:
    from agents.kafka_errors import EXIT_KAFKA, KafkaUnavailable, preflight

    said = -10.0

    def waiting(line: str, waited: float) -> None:
        nonlocal said
        if waited - said >= 10:  # a progress line every 10 s, not every try
            said = waited
            click.echo(f"waiting for Kafka ({waited:.0f} of {wait:.0f}s): {line}", err=True)

    try:
        asyncio.run(preflight(kafka, wait, waiting))
    except KafkaUnavailable as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_KAFKA)


KAFKA_OPTION_NAMES = ("bootstrap", "kafka_config", "security_protocol", "sasl_mechanism", "sasl_username",
                      "ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname",
                      "broker_wait")  # fmt: skip


def _load(path: str) -> Flow:
    try:
        return load_flow(path)
    except FlowFileError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(exc.problems)} problem(s) in {path}", err=True)
        sys.exit(EXIT_INVALID_FLOW)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="leadstreams", message="%(prog)s %(version)s")
def main() -> None:
    """leadstreams: custom HTTP API integrations over a Kafka stream of leads."""
    from agents.guard import check_agents_package

    check_agents_package()


@main.command()
@click.argument("flow", type=click.Path(dir_okay=False))
def check(flow: str) -> None:
    """Validate FLOW; list every problem as FILE:LINE: path: message (exit 2)."""
    loaded = _load(flow)
    click.echo(f"{flow}: ok — flow {loaded.name!r}, {len(loaded.steps)} step(s), input {loaded.topics.input}")


@main.command(name="try")
@click.argument("flow", type=click.Path(dir_okay=False))
@click.option(
    "--lead", "lead_file", required=True, type=click.File("rb"), help="The lead, a JSON file (- for stdin)."
)
@click.option("--step", "step_name", default=None, help="Run up to this step and show only it.")
@click.option("--verbose", "-v", is_flag=True, help="Show response headers, whole bodies and parsed values.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
def try_flow(
    flow: str, lead_file: click.utils.LazyFile, step_name: str | None, verbose: bool, as_json: bool
) -> None:
    """Test console: send FLOW's real requests for one lead and show each step
    (request with secrets masked, raw response, mapped fields, outcome, timing).
    Exit 1 when the lead's outcome is error."""
    from streams.console import run_report
    from streams.execution import Exchange
    from streams.http_client import HttpClient
    from streams.masking import Masker
    from streams.runner import FlowRunner

    loaded = _load(flow)
    lead = _read_lead(lead_file)
    if step_name is not None and step_name not in {step.name for step in loaded.steps}:
        raise click.BadParameter(f"no step {step_name!r} in {flow}", param_hint="--step")

    async def run() -> dict[str, object]:
        client = HttpClient()
        exchanges: dict[str, Exchange] = {}
        try:
            result = await FlowRunner(loaded, client).run(
                lead, str(lead.get("id", "try")), exchanges, step_name
            )
        finally:
            await client.close()
        return run_report(result, exchanges, Masker(loaded.secrets), verbose, step_name)

    report = asyncio.run(run())
    if as_json:
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        from agents.console_view import print_report

        print_report(report, Console())
    sys.exit(1 if report["outcome"] == "error" else 0)


@main.command(name="test")
@click.argument("flow", type=click.Path(dir_okay=False))
@click.option(
    "--cases",
    "cases_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="Saved cases (default: FLOW's name with .cases.yaml).",
)
def test_flow(flow: str, cases_file: str | None) -> None:
    """Run FLOW's saved test cases offline (recorded responses, no network); exit 1 on any failure."""
    from streams.testcases import run_cases

    try:
        reports = asyncio.run(run_cases(flow, cases_file))
    except FlowFileError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        sys.exit(EXIT_INVALID_FLOW)
    out = Console()
    for report in reports:
        mark = "[green]PASS[/]" if report.passed else "[red]FAIL[/]"
        out.print(f"{mark} {escape(report.name)}", highlight=False)  # a name may hold [brackets]
        for mismatch in report.mismatches:
            out.print(f"     {mismatch}", highlight=False, markup=False)
    failed = sum(not r.passed for r in reports)
    out.print(f"{len(reports) - failed} passed, {failed} failed", highlight=False)
    sys.exit(1 if failed else 0)


@main.command()
@click.argument("flow", type=click.Path(dir_okay=False))
@kafka_options(broker_wait=60.0)
@click.option("--web-host", default="127.0.0.1", show_default=True, help="Host of /metrics.")
@click.option("--web-port", default=6066, show_default=True, help="Port of /metrics (one per worker).")
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
@click.option("--loglevel", default="info", show_default=True, help="debug logs every partner request.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--log-bodies", is_flag=True, help="With --loglevel debug, also log request/response bodies.")
def worker(
    flow: str,
    kafka: KafkaConnection,
    web_host: str,
    web_port: int,
    batch_size: int,
    max_in_flight: int,
    group_id: str | None,
    instance_id: str | None,
    session_timeout: float,
    partitions: int,
    replication_factor: int | None,
    topic_configs: tuple[str, ...],
    create_topics: bool,
    max_lead_bytes: int,
    max_output_bytes: int,
    loglevel: str,
    log_format: str,
    log_bodies: bool,
) -> None:
    """Run the Faust worker for FLOW (consume, call APIs, produce results)."""
    from prometheus_client import CollectorRegistry

    from agents.app import WorkerOptions, create_app
    from agents.kafka_io import broker_replication_factor, ensure_topics, partition_count
    from agents.logs import mask_log_records
    from agents.worker_run import run_worker
    from streams.delayed import tier_topics
    from streams.masking import Masker

    loaded = _load(flow)
    mask_log_records(Masker(loaded.secrets))
    topics = loaded.topics
    names = [topics.input, topics.enriched, topics.errors]
    if loaded.delayed_retry is not None and topics.retry:
        names += tier_topics(topics.retry, loaded.delayed_retry).values()
    configs = _topic_configs(topic_configs)
    replication_factor = replication_factor or kafka_call(
        broker_replication_factor(kafka), "to describe the broker's config (pass --replication-factor)"
    )
    if create_topics:
        creating = ensure_topics(kafka, names, partitions, replication_factor, configs)
        created = kafka_call(creating, "to create the flow's topics (or create them, --no-create-topics)")
        if created:
            err.print(f"created topics: {', '.join(created)}", soft_wrap=True)
    input_partitions = kafka_call(partition_count(kafka, topics.input), "to describe the input topic")
    if create_topics and input_partitions is not None and input_partitions < partitions:
        click.echo(  # one line, not wrapped: log files and shippers read it
            f"WARNING: input topic {topics.input} has {input_partitions} partition(s), fewer than "
            f"--partitions {partitions}: at most {input_partitions} worker(s) can share it. Add partitions "
            f"with kafka-topics.sh --alter --topic {topics.input} --partitions {partitions} (leads with "
            "the same id may then be processed out of order once), or pass --partitions "
            f"{input_partitions}.",
            err=True,
        )
    options = WorkerOptions(
        kafka=kafka,
        web_host=web_host,
        web_port=web_port,
        batch_size=batch_size,
        max_in_flight=max_in_flight,
        group_id=group_id,
        instance_id=instance_id,
        session_timeout=session_timeout,
        replication_factor=replication_factor,
        input_partitions=input_partitions,
        max_lead_bytes=max_lead_bytes,
        max_output_bytes=max_output_bytes,
    )
    app = create_app(loaded, options, CollectorRegistry())
    err.print(
        f"worker for flow {loaded.name!r}: {topics.input} -> {topics.enriched} / {topics.errors}; "
        f"metrics at http://{web_host}:{web_port}/metrics",
        soft_wrap=True,  # one line in log files, not wrapped at 80 columns
    )
    run_worker(app, loglevel, log_format, log_bodies)


@main.command()
@click.argument("topic")
@click.argument("file", type=click.File("rb"))
@kafka_options(broker_wait=10.0)
def publish(topic: str, file: click.utils.LazyFile, kafka: KafkaConnection) -> None:
    """Publish each line of FILE (JSON lines) to TOPIC as-is; key = the lead's id."""
    from agents.kafka_io import publish as publish_messages

    lines = [line.rstrip(b"\r\n") for line in file if line.strip()]
    with _progress() as progress:
        task = progress.add_task(f"publishing to {topic}", total=len(lines))
        count = asyncio.run(
            publish_messages(
                kafka,
                topic,
                ((_key_of(line), line) for line in lines),
                on_sent=lambda n: progress.update(task, completed=n),
            )
        )
    err.print(f"published {count} message(s) to {topic}")


@main.command()
@click.argument("topics", nargs=-1, required=True)
@kafka_options(broker_wait=10.0)
@click.option("--count", "-n", default=0, help="Stop after this many messages (0: until --timeout).")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to read for.")
def tail(topics: tuple[str, ...], kafka: KafkaConnection, count: int, timeout: float) -> None:
    """Print the messages of TOPICS from the beginning, one JSON line each."""
    from agents.kafka_io import Record, collect

    def show(record: Record) -> None:
        click.echo(record.value.decode("utf-8", errors="replace"))

    records = asyncio.run(
        collect(kafka, list(topics), lambda r: bool(count) and len(r) >= count, timeout, on_record=show)
    )
    err.print(f"{len(records)} message(s)")


def _topic_configs(pairs: tuple[str, ...]) -> dict[str, str]:
    configs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not (sep and key.strip() and value.strip()):
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--topic-config")
        configs[key.strip()] = value.strip()
    return configs


def _read_lead(file: click.utils.LazyFile) -> dict[str, object]:
    try:
        lead = orjson.loads(file.read())
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--lead") from None
    if not isinstance(lead, dict):
        raise click.BadParameter("a lead must be a JSON object", param_hint="--lead")
    return lead


def _key_of(line: bytes) -> bytes | None:
    try:
        lead = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if isinstance(lead, dict) and isinstance(lead.get("id"), str | int):
        return str(lead["id"]).encode()
    return None


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
