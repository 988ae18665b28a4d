"""``leadstreams trace ID FLOW``: where a lead went, across the flow's topics, in time order.

Kafka has no index by key: every message of the flow's topics written since
``--since`` (default the last 24 h, found per partition with offsets_for_times) is read
once and the lead's are kept. Three passes, so that a replay is followed even when the
lead has no id of its own (its replayed copy then gets another derived id):

1. the input topic: the lead's messages (key or ``id``), and every replayed message
   (``leadstreams-replayed-from``);
2. the enriched, errors and delayed-retry topics: events whose ``id`` is ID or whose
   ``input`` is one of the lead's messages; deferred copies by key or origin headers;
   a replayed message whose source event is the lead's joins the lead's messages;
3. the notification topics: records and attempts events of the lead's ids.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import click
import orjson

from agents.cli_kafka import kafka_options
from agents.cli_reading import flow_topics, run_read
from agents.kafka_connection import KafkaConnection
from agents.record_view import REPLAYED_FROM, View, as_record, human, input_of, origin, text, view
from agents.topic_reader import Start, TopicReader, TopicRecord, iso, read_at
from streams.flow import Topics


@dataclass
class Trace:
    lead_id: str
    messages: dict[str, tuple[TopicRecord, str]] = field(
        default_factory=dict
    )  # coordinates -> (record, role)
    inputs: set[str] = field(default_factory=set)  # the lead's input messages
    ids: set[str] = field(default_factory=set)  # the lead's ids (a replay without an id gets another)
    replays: dict[str, TopicRecord] = field(default_factory=dict)  # every replayed input, by coordinates
    maybe: list[tuple[TopicRecord, View, str | None]] = field(default_factory=list)  # of a replayed input
    read: int = 0

    def keep(self, record: TopicRecord, role: str) -> None:
        self.messages[record.coordinates] = (record, role)

    def events(self) -> set[str]:
        return {where for where, (_, role) in self.messages.items() if role in ("output", "deferred")}


@click.command()
@click.argument("lead_id", metavar="ID")
@click.argument("flow", type=click.Path(exists=True, dir_okay=False))
@kafka_options(broker_wait=10.0, prepare=lambda given: {"topics": flow_topics(given["flow"])})
@click.option("--since", default="24h", show_default=True, metavar="TIME|beginning",
              help="Read the messages written since then (ISO time, or ago: 2h, 7d; beginning: all "
              "the topics hold). Every message since then is read once: the cost grows with it.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message (with its role).")
def trace(lead_id: str, flow: str, topics: Topics, kafka: KafkaConnection, since: str, as_json: bool) -> None:
    """Where lead ID went in FLOW: its input message(s), every output event with its outcome
    and reason, deferrals, replays and notifications, in time order. Exit 1 when none is found."""
    try:
        start = Start.parse(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--since'") from None
    if start.kind not in ("time", "beginning"):
        raise click.BadParameter("give a time (ISO, or ago: 2h) or beginning", param_hint="'--since'")
    began = time.monotonic()
    found = run_read(_trace(kafka, topics, lead_id, start), f"to read the topics of {flow}")
    for record, role in sorted(found.messages.values(), key=lambda item: _when(item[0])):
        if as_json:
            click.echo(orjson.dumps({"role": role, **as_record(record)}).decode())
        else:
            click.echo(human(record, role=role))
    window = "since " + (iso(start.value) if start.kind == "time" else "the beginning")
    click.echo(
        f"{len(found.messages)} message(s) about {lead_id} {window} "
        f"({found.read} read in {time.monotonic() - began:.1f}s)",
        err=True,
    )
    if not found.messages:
        raise SystemExit(1)


async def _trace(kafka: KafkaConnection, topics: Topics, lead_id: str, start: Start) -> Trace:
    found = Trace(lead_id, ids={lead_id})
    existing = await _existing(kafka)
    retry = sorted(t for t in existing if topics.retry and t.startswith(f"{topics.retry}."))
    notify = []
    if topics.notifications:
        queue = topics.notifications
        notify = sorted(t for t in existing if t == queue or t.startswith(f"{queue}."))

    async for record in _read(kafka, [topics.input], start, found):
        seen = view(record)
        if lead_id in seen.ids:
            found.inputs.add(record.coordinates)
            found.keep(record, "input")
        if record.header(REPLAYED_FROM) is not None:
            found.replays[record.coordinates] = record

    async for record in _read(kafka, [topics.enriched, topics.errors, *retry], start, found):
        seen = view(record)
        where = (
            origin(record) if seen.kind == "deferred" else input_of(seen) if seen.kind == "event" else None
        )
        role = "deferred" if seen.kind == "deferred" else "output"
        if seen.kind not in ("event", "deferred"):
            continue
        if lead_id in seen.ids or where in found.inputs:
            found.keep(record, role)
            found.ids |= {i for i in seen.ids if seen.kind == "event"}
        elif where in found.replays:
            found.maybe.append((record, seen, where))
    _follow_replays(found)
    # The input messages of the lead's events that were not found by key or id (a lead
    # without an id, or written before --since), read where the events say they are.
    named = {
        where
        for record, role in found.messages.values()
        if role in ("output", "deferred")
        and (where := origin(record) if role == "deferred" else input_of(view(record)))
    }
    for where, record in (await read_at(kafka, named - found.messages.keys())).items():
        found.inputs.add(where)
        found.keep(record, "input")

    if notify:
        async for record in _read(kafka, notify, start, found):
            seen = view(record)
            if seen.ids & found.ids or (seen.kind == "notification" and input_of(seen) in found.inputs):
                found.keep(record, seen.kind if seen.kind in ("attempts", "notification") else "notify")
    for where, (record, role) in found.messages.items():
        replayed = record.header(REPLAYED_FROM)
        if role == "input" and replayed is not None:
            found.messages[where] = (record, f"input (replay of {text(replayed)})")
    return found


def _follow_replays(found: Trace) -> None:
    """Replayed messages whose source event is the lead's are the lead's input too, and
    the events of those messages the lead's events, until nothing more joins."""
    while True:
        events = found.events()
        joined = {
            where
            for where, record in found.replays.items()
            if where not in found.inputs and text(record.header(REPLAYED_FROM)) in events
        }
        if not joined:
            return
        for where in joined:
            found.inputs.add(where)
            found.keep(found.replays[where], "input")
        for record, seen, where in found.maybe:
            if where in found.inputs:
                found.keep(record, "deferred" if seen.kind == "deferred" else "output")
                if seen.kind == "event":
                    found.ids |= seen.ids


async def _read(kafka: KafkaConnection, topics: list[str], start: Start, found: Trace) -> Any:
    async with TopicReader(kafka, topics) as reader:
        async for record in reader.to_end(await reader.offsets_at(start)):
            found.read += 1
            yield record


async def _existing(kafka: KafkaConnection) -> set[str]:
    from agents.kafka_io import admin_client

    async with admin_client(kafka) as admin:
        return set(await admin.list_topics())


def _when(record: TopicRecord) -> tuple[int, str, int, int]:
    return (record.timestamp_ms, record.topic, record.partition, record.offset)
