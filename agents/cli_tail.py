"""``leadstreams tail``: a topic's messages as kcat shows them, with our events read:
from the beginning, the end, an offset or a time; the last N; follow; filters."""

from __future__ import annotations

from typing import Any

import click

from agents.cli_errors import TopicName
from agents.cli_kafka import kafka_options
from agents.cli_reading import filter_options, run_read
from agents.kafka_connection import KafkaConnection

FORMATS = ("json", "human", "record")


@click.command()
@click.argument("topics", nargs=-1, required=True, type=TopicName())
@kafka_options(broker_wait=10.0)
@click.option(
    "--from",
    "start",
    metavar="beginning|end|OFFSET|TIME",
    help="Where to start in every partition: beginning, end, an offset, or a time (ISO "
    "2026-12-01T10:00:00Z, UTC without a zone; or ago: 90s, 10m, 2h, 1d). "
    "Default: end with --follow, else beginning.",
)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new messages until Ctrl-C.")
@click.option(
    "-n",
    "--lines",
    "--count",
    "count",
    type=click.IntRange(min=1),
    metavar="N",
    help="The last N (matching) messages of each topic, by timestamp over its partitions; "
    "with --follow, then the new ones.",
)
@click.option(
    "--format",
    "form",
    type=click.Choice(FORMATS),
    default="json",
    show_default=True,
    help="json: each message's value as it is; human: one line with time, topic[partition]"
    "@offset, key, outcome and reason; record: the whole message (key, headers, value) as JSON.",
)
@click.option("--headers", is_flag=True, help="Show the headers (json: prints the record form).")
@filter_options()
def tail(
    topics: tuple[str, ...],
    kafka: KafkaConnection,
    start: str | None,
    follow: bool,
    count: int | None,
    form: str,
    headers: bool,
    outcomes: tuple[str, ...],
    ids: tuple[str, ...],
    steps: tuple[str, ...],
) -> None:
    """Print the messages of TOPICS: without --follow up to their ends when it starts."""
    from agents.record_view import Filters
    from agents.topic_reader import Start

    if count is not None and start is not None:
        raise click.UsageError("give -n (the last N) or --from, not both")
    try:
        where = Start.parse(start or ("end" if follow else "beginning"))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--from'") from None
    filters = Filters(frozenset(outcomes), frozenset(ids), frozenset(steps))
    shown = run_read(
        _tail(kafka, list(topics), where, follow, count, filters, _printer(form, headers)),
        f"to read {', '.join(topics)}",
        interrupt_ok=follow,
    )
    click.echo(f"{shown} message(s)", err=True)  # (rich would wrap it at 80 columns in a pipe)


def _printer(form: str, headers: bool) -> Any:
    from agents.record_view import human, json_line

    if form == "human":
        return lambda record, seen: click.echo(human(record, seen, headers))
    return lambda record, seen: click.echo(json_line(record, whole=form == "record" or headers))


async def _tail(
    kafka: KafkaConnection,
    topics: list[str],
    where: Any,
    follow: bool,
    count: int | None,
    filters: Any,
    show: Any,
) -> int:
    from agents.record_view import view
    from agents.topic_reader import TopicReader

    shown = 0

    def offer(record: Any) -> None:
        nonlocal shown
        seen = view(record) if filters else None
        if filters.match(record, seen):
            show(record, seen)
            shown += 1

    async with TopicReader(kafka, topics) as reader:
        if count is not None:
            for record in await reader.last(count, lambda r: filters.match(r)):
                show(record, None)
                shown += 1
            starts = dict(reader.end)  # new messages come after the ends the last N were read to
        else:
            starts = await reader.offsets_at(where)
        if follow:
            async for record in reader.read(starts):
                offer(record)
        elif count is None:
            async for record in reader.to_end(starts):
                offer(record)
    return shown
