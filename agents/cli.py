"""The ``leadstreams`` command line."""

from __future__ import annotations

import asyncio
import logging
import sys

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from streams.flow import Flow
from streams.loader import load_flow
from streams.problems import FlowFileError

err = Console(stderr=True)
EXIT_INVALID_FLOW = 2
bootstrap_option = click.option(
    "--bootstrap",
    envvar="LEADSTREAMS_BOOTSTRAP",
    default="127.0.0.1:9092",
    show_default=True,
    help="Kafka bootstrap servers (env LEADSTREAMS_BOOTSTRAP).",
)


def _load(path: str) -> Flow:
    try:
        return load_flow(path)
    except FlowFileError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(exc.problems)} problem(s) in {path}", err=True)
        sys.exit(EXIT_INVALID_FLOW)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


@main.command()
@click.argument("flow", type=click.Path(dir_okay=False))
@bootstrap_option
@click.option("--web-host", default="127.0.0.1", show_default=True, help="Host of /metrics.")
@click.option("--web-port", default=6066, show_default=True, help="Port of /metrics (one per worker).")
@click.option("--batch-size", default=500, show_default=True, help="Leads processed concurrently per fetch.")
@click.option("--group-id", default=None, help="Consumer group (default leadstreams-FLOWNAME).")
@click.option("--partitions", default=4, show_default=True, help="Partitions for topics it creates.")
@click.option(
    "--create-topics/--no-create-topics",
    default=True,
    show_default=True,
    help="Create the flow's topics if missing.",
)
@click.option("--loglevel", default="info", show_default=True)
def worker(
    flow: str,
    bootstrap: str,
    web_host: str,
    web_port: int,
    batch_size: int,
    group_id: str | None,
    partitions: int,
    create_topics: bool,
    loglevel: str,
) -> None:
    """Run the Faust worker for FLOW (consume, call APIs, produce results)."""
    import faust
    from prometheus_client import CollectorRegistry

    from agents.app import WorkerOptions, create_app
    from agents.kafka_io import ensure_topics

    loaded = _load(flow)
    if create_topics:
        topics = loaded.topics
        created = asyncio.run(
            ensure_topics(bootstrap, [topics.input, topics.enriched, topics.errors], partitions)
        )
        if created:
            err.print(f"created topics: {', '.join(created)}")
    options = WorkerOptions(
        bootstrap=bootstrap, web_host=web_host, web_port=web_port, batch_size=batch_size, group_id=group_id
    )
    app = create_app(loaded, options, CollectorRegistry())
    err.print(
        f"worker for flow {loaded.name!r}: {loaded.topics.input} -> "
        f"{loaded.topics.enriched} / {loaded.topics.errors}; "
        f"metrics at http://{web_host}:{web_port}/metrics"
    )
    runner = faust.Worker(app, loglevel=loglevel.upper(), redirect_stdouts=False)
    if not sys.stdout.isatty():
        runner.spinner = None  # its escape codes only garble log files
    runner.execute_from_commandline()


@main.command()
@click.argument("topic")
@click.argument("file", type=click.File("rb"))
@bootstrap_option
def publish(topic: str, file: click.utils.LazyFile, bootstrap: str) -> None:
    """Publish each line of FILE (JSON lines) to TOPIC as-is; key = the lead's id."""
    from agents.kafka_io import publish as publish_messages

    lines = [line.rstrip(b"\r\n") for line in file if line.strip()]
    with _progress() as progress:
        task = progress.add_task(f"publishing to {topic}", total=len(lines))
        count = asyncio.run(
            publish_messages(
                bootstrap,
                topic,
                ((_key_of(line), line) for line in lines),
                on_sent=lambda n: progress.update(task, completed=n),
            )
        )
    err.print(f"published {count} message(s) to {topic}")


@main.command()
@click.argument("topics", nargs=-1, required=True)
@bootstrap_option
@click.option("--count", "-n", default=0, help="Stop after this many messages (0: until --timeout).")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to read for.")
def tail(topics: tuple[str, ...], bootstrap: str, count: int, timeout: float) -> None:
    """Print the messages of TOPICS from the beginning, one JSON line each."""
    from agents.kafka_io import Record, collect

    def show(record: Record) -> None:
        click.echo(record.value.decode("utf-8", errors="replace"))

    records = asyncio.run(
        collect(bootstrap, list(topics), lambda r: bool(count) and len(r) >= count, timeout, on_record=show)
    )
    err.print(f"{len(records)} message(s)")


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
