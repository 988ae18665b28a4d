"""The ``leadstreams`` command line."""

from __future__ import annotations

import asyncio
import logging
import logging.config
import sys
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agents.cli_errors import EXIT_USAGE, OneLineErrors, TopicName, fail, port_problem, say
from agents.cli_kafka import kafka_call, kafka_options
from agents.kafka_connection import KafkaConnection
from agents.topic_names import topic_name_problem
from streams.flow import Flow
from streams.loader import load_flow
from streams.problems import FlowFileError

err = Console(stderr=True)
EXIT_INVALID_FLOW = 2
LOGLEVELS = ("debug", "info", "warning", "error", "critical")


def _load(path: str) -> Flow:
    try:
        return load_flow(path)
    except FlowFileError as exc:
        problems = exc.problems
        if len(problems) == 1 and problems[0].line == 0:  # unreadable, not UTF-8: one line
            fail(f"flow {path}: {problems[0].message}", EXIT_INVALID_FLOW)
        for problem in problems:
            say.plain(str(problem), logging.ERROR)
        say.plain(f"{len(problems)} problem(s) in {path}", logging.ERROR)
        sys.exit(EXIT_INVALID_FLOW)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="leadstreams", message="%(prog)s %(version)s")
def main() -> None:
    """leadstreams: custom HTTP API integrations over a Kafka stream of leads."""
    from agents.guard import check_agents_package

    check_agents_package()


@main.command()
@click.argument("flows", metavar="FLOW...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--env-file",
    "env_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="NAME=value lines read over the environment (repeatable): check with a deployment's values.",
)
def check(flows: tuple[str, ...], env_files: tuple[str, ...]) -> None:
    """Validate each FLOW; list every problem as FILE:LINE:COLUMN: path: message (exit 2)."""
    from streams.loader import check_files

    loaded, problems = check_files(flows, env_files=env_files)
    for problem in problems:
        say.plain(str(problem), logging.ERROR)
    if problems:
        files = ", ".join(dict.fromkeys(problem.file for problem in problems))
        say.plain(f"{len(problems)} problem(s) in {files}", logging.ERROR)
        sys.exit(EXIT_INVALID_FLOW)
    for flow in loaded:
        steps = len(flow.steps)
        click.echo(f"{flow.source_file}: ok — flow {flow.name!r}, {steps} step(s), input {flow.topics.input}")


LOOPBACK_OPTION = click.option(
    "--allow-loopback",
    is_flag=True,
    envvar="LEADSTREAMS_ALLOW_LOOPBACK",
    help="Development only: let every integration reach loopback and private addresses (a partner "
    "stand-in on this machine or in a compose network), whatever the flow says. Metadata and "
    "link-local addresses stay refused (env LEADSTREAMS_ALLOW_LOOPBACK=1).",
)


def _local_partners(allow: bool) -> None:
    from streams.netguard import allow_local_partners

    allow_local_partners(allow)


@main.command(name="try")
@click.argument("flow", type=click.Path(dir_okay=False))
@click.option(
    "--lead", "lead_file", required=True, type=click.File("rb"), help="The lead, a JSON file (- for stdin)."
)
@click.option("--step", "step_name", default=None, help="Run up to this step and show only it.")
@click.option("--verbose", "-v", is_flag=True, help="Show response headers, whole bodies and parsed values.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
@click.option(
    "--record",
    is_flag=True,
    help="Append this run to the saved cases as a case: every answer per step in order, the "
    "outcome, reasons, mapped fields, price and reference as expected values, secrets masked.",
)
@click.option(
    "--cases",
    "cases_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="With --record: the cases file (default: FLOW's name with .cases.yaml).",
)
@click.option("--case-name", default=None, help="With --record: the case's name (default: LEAD-ID: OUTCOME).")
@LOOPBACK_OPTION
def try_flow(
    flow: str,
    lead_file: click.utils.LazyFile,
    step_name: str | None,
    verbose: bool,
    as_json: bool,
    record: bool,
    cases_file: str | None,
    case_name: str | None,
    allow_loopback: bool,
) -> None:
    """Test console: send FLOW's real requests for one lead and show each step
    (request with secrets masked, raw response, mapped fields, outcome, timing).
    Exit 1 when the lead's outcome is error."""
    from streams.console import run_report
    from streams.http_client import HttpClient
    from streams.masking import Masker
    from streams.outcomes import FlowResult
    from streams.recording import RecordingTransport
    from streams.runner import FlowRunner
    from streams.step.exchange import Exchange
    from streams.transport import Transport

    _local_partners(allow_loopback)
    loaded = _load(flow)
    lead = _read_lead(lead_file)
    if step_name is not None and step_name not in {step.name for step in loaded.steps}:
        raise click.BadParameter(f"no step {step_name!r} in {flow}", param_hint="--step")
    if record and step_name is not None:  # `leadstreams test` runs whole flows
        raise click.BadParameter("a recorded case is a whole run: drop --step", param_hint="--record")
    exchanges: dict[str, Exchange] = {}
    formats = {step.name: step.response_format for step in loaded.steps}
    recording = RecordingTransport(HttpClient(), formats) if record else None

    async def run() -> FlowResult:
        client: Transport = recording if recording is not None else HttpClient()
        try:
            return await FlowRunner(loaded, client).run(
                lead, str(lead.get("id", "try")), exchanges, step_name
            )
        finally:
            await client.close()

    result = asyncio.run(run())
    report = run_report(result, exchanges, Masker(loaded.secrets), verbose, step_name)
    if as_json:
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        from agents.console_view import print_report

        print_report(report, Console())
    if recording is not None:
        _record(flow, loaded, lead, result, exchanges, recording, cases_file, case_name)
    sys.exit(1 if report["outcome"] == "error" else 0)


def _record(flow: str, loaded: Flow, lead: dict[str, object], *run: Any) -> None:
    """Save the run as a case; say where on stderr (stdout may be --json)."""
    import os

    import yaml

    from streams.case_file import save_case
    from streams.masking import Masker
    from streams.recording import recorded_case, recorded_settings, referenced_variables
    from streams.testcases import cases_path_for
    from streams.yaml_source import read_source

    result, exchanges, recording, cases_file, case_name = run
    masker = Masker(loaded.secrets)  # after the run: it knows the tokens learned during it
    name = case_name or f"{lead.get('id', 'lead')}: {result.outcome.value}"
    case = recorded_case(name, lead, result, exchanges, recording, masker)
    variables = referenced_variables(yaml.safe_load(read_source(flow)))
    settings = recorded_settings(variables, os.environ, masker)
    path = cases_file or cases_path_for(flow)
    try:
        saved = save_case(path, case, settings, Path(flow).name)
    except FlowFileError as exc:
        for problem in exc.problems:
            say.plain(str(problem), logging.ERROR)
        _show_unsaved(case, settings)
        fail(f"not recorded: {path} is not a valid cases file", EXIT_INVALID_FLOW)
    except OSError as exc:  # no such folder, no permission, disk full...
        _show_unsaved(case, settings)
        fail(f"not recorded: cannot write {path}: {exc.strerror or exc}", EXIT_INVALID_FLOW)
    err.print(f"recorded case {saved.name!r} in {saved.path}", highlight=False, markup=False)
    if saved.rewritten:
        err.print(f"note: {saved.path} was rewritten whole (its cases: list is not last or not a "
                  "block list): comments dropped", highlight=False, markup=False)  # fmt: skip
    if saved.missing_settings:
        lacking = ", ".join(saved.missing_settings)
        err.print(f"note: the settings: of {saved.path} lack {lacking}; leadstreams test reads them "
                  "from the environment", highlight=False, markup=False)  # fmt: skip


def _show_unsaved(case: dict[str, Any], settings: dict[str, str]) -> None:
    """The partners were called already: the recording goes to stderr as a cases file of its
    own (stdout may be --json), so it can be saved by hand instead of run again."""
    from streams.case_file import case_text

    err.print("# the recorded case, not saved:", highlight=False, markup=False)
    err.print(case_text(case, settings), end="", highlight=False, markup=False, soft_wrap=True)


@main.command(name="test")
@click.argument("flow", type=click.Path(dir_okay=False))
@click.option(
    "--cases",
    "cases_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="Saved cases (default: FLOW's name with .cases.yaml).",
)
@LOOPBACK_OPTION
def test_flow(flow: str, cases_file: str | None, allow_loopback: bool) -> None:
    """Run FLOW's saved test cases offline (recorded responses, no network); exit 1 on any failure.
    --allow-loopback is accepted as on try and worker; the replay never connects anywhere."""
    from streams.testcases import run_cases

    _local_partners(allow_loopback)
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
    loaded = _load(arguments["flow"])
    if arguments["allow_loopback"]:  # said first, before any wait for a broker
        say(logging.WARNING, "--allow-loopback (LEADSTREAMS_ALLOW_LOOPBACK) is on: every integration may "
            "reach loopback and private addresses. For development only, never in production")  # fmt: skip
    for name in _topics_of(loaded):
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


def _topics_of(loaded: Flow) -> dict[str, str]:
    """The topics a worker of ``loaded`` reads or writes (input, enriched, errors, retry
    tiers), each with what fewer partitions than asked would cost."""
    from streams.delayed import tier_topics

    topics = loaded.topics
    roles = {topics.input: READ, topics.enriched: WRITTEN, topics.errors: WRITTEN}
    if loaded.delayed_retry is not None and topics.retry:
        roles.update(dict.fromkeys(tier_topics(topics.retry, loaded.delayed_retry).values(), READ))
    return roles


@main.command()
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
    from agents.kafka_io import broker_replication_factor, ensure_topics, partition_counts
    from agents.logs import mask_log_records
    from agents.worker_run import run_worker
    from streams.masking import Masker

    mask_log_records(Masker(loaded.secrets))
    _local_partners(allow_loopback)
    topics = loaded.topics
    roles = _topics_of(loaded)
    names = list(roles)
    configs = _topic_configs(topic_configs)
    replication_factor = replication_factor or kafka_call(
        broker_replication_factor(kafka), "to describe the broker's config (pass --replication-factor)"
    )
    if create_topics:
        creating = ensure_topics(kafka, names, partitions, replication_factor, configs)
        created = kafka_call(creating, "to create the flow's topics (or create them, --no-create-topics)")
        if created:
            say(logging.INFO, f"created topics: {', '.join(created)}")
    counts = kafka_call(partition_counts(kafka, names), "to describe the flow's topics")
    if create_topics:
        for name in names:
            if counts.get(name, partitions) < partitions:
                say(logging.WARNING, _fewer_partitions(name, counts[name], partitions, roles[name], kafka))
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
        input_partitions=counts.get(topics.input),
        max_lead_bytes=max_lead_bytes,
        max_output_bytes=max_output_bytes,
    )
    app = create_app(loaded, options, CollectorRegistry())
    say(
        logging.INFO,
        f"starting the worker for flow {loaded.name!r}: joining consumer group {app.conf.id!r}",
    )
    run_worker(app, loglevel, log_format, log_bodies)


def _fewer_partitions(name: str, count: int, wanted: int, role: str, kafka: KafkaConnection) -> str:
    """The start's WARNING for a topic that existed with fewer partitions than --partitions."""
    return (
        f"topic {name} has {count} partition(s), fewer than --partitions {wanted}: "
        f"{role.format(count=count)}. Add partitions with kafka-topics.sh --bootstrap-server "
        f"{kafka.bootstrap} --alter --topic {name} --partitions {wanted}, or pass --partitions {count}"
    )


def _json_lines(ctx: click.Context, param: click.Parameter, file: Any) -> list[tuple[bytes | None, bytes]]:
    """FILE's non-empty lines as (key, line), each checked to be JSON before anything is
    sent: a binary or mistyped file is one line naming where, not a topic of junk."""
    messages = []
    for number, raw in enumerate(file, 1):
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            continue
        try:
            line.decode("utf-8")
            lead = orjson.loads(line)
        except UnicodeDecodeError:
            message = f"{file.name}:{number}: not UTF-8 text; FILE is JSON lines, one lead per line"
            raise click.BadParameter(message, ctx, param) from None
        except orjson.JSONDecodeError as exc:
            raise click.BadParameter(
                f"{file.name}:{number}: not JSON ({exc}); FILE is JSON lines, one lead per line", ctx, param
            ) from None
        messages.append((_key_of(lead), line))
    return messages


@main.command()
@click.argument("topic", type=TopicName())
@click.argument("file", type=click.File("rb"), callback=_json_lines)
@kafka_options(broker_wait=10.0)
def publish(topic: str, file: list[tuple[bytes | None, bytes]], kafka: KafkaConnection) -> None:
    """Publish each line of FILE (JSON lines) to TOPIC as-is; key = the lead's id."""
    from agents.kafka_io import publish as publish_messages

    with _progress() as progress:
        task = progress.add_task(f"publishing to {topic}", total=len(file))
        sending = publish_messages(kafka, topic, file, on_sent=lambda n: progress.update(task, completed=n))
        count = kafka_call(sending, f"the messages for {topic}")
    err.print(f"published {count} message(s) to {topic}")


@main.command()
@click.argument("topics", nargs=-1, required=True, type=TopicName())
@kafka_options(broker_wait=10.0)
@click.option("--count", "-n", default=0, help="Stop after this many messages (0: until --timeout).")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to read for.")
def tail(topics: tuple[str, ...], kafka: KafkaConnection, count: int, timeout: float) -> None:
    """Print the messages of TOPICS from the beginning, one JSON line each."""
    from agents.kafka_io import Record, collect

    def show(record: Record) -> None:
        click.echo(record.value.decode("utf-8", errors="replace"))

    reading = collect(kafka, list(topics), lambda r: bool(count) and len(r) >= count, timeout, on_record=show)
    records = kafka_call(reading, f"to read {', '.join(topics)}")
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
    data = file.read()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise click.BadParameter(f"{file.name}: not UTF-8 text ({exc.reason} at byte {exc.start})",
                                 param_hint="--lead") from None  # fmt: skip
    try:
        lead = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"{file.name}: not valid JSON: {exc}", param_hint="--lead") from None
    if not isinstance(lead, dict):
        raise click.BadParameter(f"{file.name}: a lead must be a JSON object", param_hint="--lead")
    return lead


def _key_of(lead: object) -> bytes | None:
    if isinstance(lead, dict) and isinstance(lead.get("id"), str | int):
        return str(lead["id"]).encode()
    return None


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    )


if __name__ == "__main__":  # as the `leadstreams` entry point: no logging set up here
    main()
