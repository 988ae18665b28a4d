"""The ``status`` command: a flow's consumer group, its lag and its last outputs, read
from Kafka (the local broker has none of Kafka's tools: this is the way to see lag)."""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import click
import orjson
from rich.console import Console
from rich.table import Table

from agents.cli_common import load_or_exit
from agents.cli_errors import say
from agents.cli_kafka import kafka_call, kafka_options
from agents.group_status import GroupStatus
from agents.kafka_connection import KafkaConnection
from streams.flow import Flow, MissingTopics, require_topics

HELP = """Show FLOW's consumer group: its members, lag and last outputs.

\b
FLOW is the worker's flow file. Without its partners' ${VARIABLES} set, only the
  names in its topics: need to be (its retry tiers and notifications are then left out).
Members: each worker in the group (its --instance-id, else its web host:port), the
  client's host and the input partitions it owns. No members: no worker runs (exit 0).
Partitions the group reads (input, retry tiers, notifications queue):
  committed  the next offset the group will process (its last commit; "-": none yet)
  end        the offset the next published record will get (the high watermark), or
             the first offset of a transaction still open (the last stable offset)
  lag        records published and not yet processed: those from committed to end
             (with nothing committed, from the partition's first offset: the worker
             starts there); over 1000 offsets behind, end - committed (the markers of
             exactly-once transactions then count as records too)
  owner      the member that owns the partition now ("-": none, no worker runs)
Last outputs (enriched and errors topics, per partition): the offset, time (the
  record's timestamp, UTC) and age of the last record, its lead's id, outcome and reason.
--json prints the same as one JSON object (lag and offsets as numbers, times in ms)."""


@dataclass(frozen=True)
class Watched:
    """What status asks Kafka about: the flow's name (its default group) and topics."""

    name: str
    read: list[str]  # input, retry tiers, notifications queue and its tiers
    written: list[str]  # enriched, errors
    left_out: str | None = None  # why some topics the group reads are not shown


def _prepare_status(arguments: dict[str, Any]) -> dict[str, Any]:
    """The flow's topics known before any contact with Kafka. A flow whose only problem is
    unset ${VARIABLES} (the partners' secrets an operator's shell does not have) is read
    for its name and topics: only its retry tiers and notification topics need the rest."""
    from streams.loader import load_flow
    from streams.problems import FlowFileError

    path = arguments["flow"]
    try:
        loaded = load_flow(path)
    except FlowFileError as exc:
        unset = [UNSET.fullmatch(problem.message) for problem in exc.problems]
        if not all(unset):
            load_or_exit(path)  # its problems, one line each, and exit 2
        return {"watched": _topics_only(path, sorted({match[1] for match in unset if match}))}
    try:
        require_topics(loaded)
    except MissingTopics as exc:
        raise click.BadParameter(str(exc), param_hint="'FLOW'") from None
    read, written = flow_topics(loaded)
    return {"watched": Watched(loaded.name, read, written)}


UNSET = re.compile(r"environment variable (\w+) is not set: export it")  # streams.envsubst.MissingVariable


def _topics_only(path: str, unset: list[str]) -> Watched:
    """The flow's name and topics: from its file, ${VARIABLES} in them substituted."""
    from agents.cli_reading import flow_topics as topics_of_file
    from streams.yaml_source import parse_yaml, read_source

    topics = topics_of_file(path)  # (one line and exit 2 if they need an unset variable)
    name = parse_yaml(read_source(path), path).data.get("name")
    left_out = None
    if topics.retry or topics.notifications:
        left_out = (
            f"retry tiers and notification topics left out: FLOW loads whole with {', '.join(unset)} set"
        )
    return Watched(str(name), [topics.input], [topics.enriched, topics.errors], left_out)


@click.command(help=HELP)
@click.argument("flow", type=click.Path(dir_okay=False))
@kafka_options(broker_wait=10.0, prepare=_prepare_status)
@click.option("--group-id", default=None, help="The workers' consumer group (default leadstreams-FLOWNAME, "
              "as the worker's --group-id).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout, for scripts.")
def status(flow: str, watched: Watched, kafka: KafkaConnection, group_id: str | None, as_json: bool) -> None:
    from agents.group_status import group_status

    group = group_id or f"leadstreams-{watched.name}"  # as agents.faust_settings.app_id
    if watched.left_out:
        say.plain(f"note: {watched.left_out}")
    found = kafka_call(
        group_status(kafka, group, watched.read, watched.written), f"to describe group {group}"
    )
    if as_json:
        shown = {"flow": watched.name, **found.as_json(), "left_out": watched.left_out}
        click.echo(orjson.dumps(shown, option=orjson.OPT_INDENT_2))
    else:
        # Piped (grep, less), rich would cut the tables at 80 columns: then lines are as long as they need.
        console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 500)
        show(found, console, time.time())


def flow_topics(loaded: Flow) -> tuple[list[str], list[str]]:
    """The topics the flow's group reads (input, retry tiers, notifications queue and its
    tiers) and its outputs (enriched, errors), as the worker makes them."""
    from agents.worker_topics import READ, worker_topics

    topics = require_topics(loaded)
    read = [name for name, role in worker_topics(loaded).items() if role == READ]
    return read, [topics.enriched, topics.errors]


def show(found: GroupStatus, console: Console, now: float) -> None:
    """The status as a few lines and two tables."""
    members = f"{len(found.members)} member(s)" if found.members else "no members: no worker runs"
    console.print(f"group {found.group}: {found.state}, {members}, lag {found.lag}")
    for member in found.members:
        flows = {t: ps for t, ps in member.partitions.items() if "-__assignor-__" not in t}  # not Faust's own
        owned = "; ".join(f"{t} {','.join(map(str, ps))}" for t, ps in flows.items())
        console.print(f"  {member.name} ({member.client_id} on {member.host}): {owned or 'no partitions'}")
    for name in found.missing_topics:
        console.print(f"topic {name} does not exist (no worker has created it yet)")
    table = Table("topic", "partition", "committed", "end", "lag", "owner", box=None, pad_edge=False)
    for p in found.positions:
        committed = "-" if p.committed is None else str(p.committed)
        table.add_row(p.topic, str(p.partition), committed, str(p.end), str(p.lag), p.member or "-")
    if found.positions:
        console.print(table)
    outputs = Table("last output", "partition", "offset", "time", "age", "id", "outcome", "reason",
                    box=None, pad_edge=False)  # fmt: skip
    for o in found.outputs:
        if o.offset is None:
            outputs.add_row(o.topic, str(o.partition), "-", "empty" if o.end == 0 else "not read")
            continue
        when = datetime.fromtimestamp((o.timestamp_ms or 0) / 1000, UTC)
        at, age = when.strftime("%Y-%m-%dT%H:%M:%SZ"), _age(now - when.timestamp())
        outputs.add_row(
            o.topic, str(o.partition), str(o.offset), at, age, o.id or "-", o.outcome or "-", _short(o.reason)
        )
    if found.outputs:
        console.print(outputs)


def _short(reason: str | None, width: int = 60) -> str:
    """The reason's start (the whole one is in --json)."""
    if not reason:
        return ""
    return reason if len(reason) <= width else reason[: width - 1] + "…"


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"
