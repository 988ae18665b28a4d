"""``leadstreams replay FLOW``: send the leads of events (the errors topic by default)
back to the flow's input, once the cause is fixed.

What is sent is the original input message (its bytes and key), read at the event's
``input`` coordinates: the event's ``lead`` already holds the mapped fields of the
steps that ran, the original does not. When the input topic no longer holds it
(retention), a processed lead is sent as the event's ``lead`` and a bad input as its
``raw`` bytes (not when ``raw`` is only the start of an oversized input); the summary
counts those. Each message carries ``leadstreams-replayed-from: topic/partition/offset``
(the event) and ``leadstreams-replayed-at``; an event whose coordinates a message on the
input topic already names is not sent again unless ``--again``.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime

import click
import orjson

from agents.cli_common import err
from agents.cli_errors import TopicName
from agents.cli_kafka import kafka_options
from agents.cli_reading import TimeParam, filter_options, flow_topics, run_read
from agents.kafka_connection import KafkaConnection
from agents.record_view import REPLAYED_AT, REPLAYED_FROM, Filters, View, human, input_of, view
from agents.topic_reader import Start, TopicReader, TopicRecord, read_at
from streams.flow import Topics


@dataclass
class Plan:
    """What a replay found and decided."""

    matching: int = 0
    already: int = 0
    bad_skipped: int = 0
    unavailable: int = 0  # neither the input nor a whole copy of it is left
    from_event: int = 0  # sent from the event: the input topic no longer holds the original
    send: list[tuple[TopicRecord, bytes | None, bytes]] = field(default_factory=list)  # (event, key, value)


@click.command()
@click.argument("flow", type=click.Path(exists=True, dir_okay=False))
@kafka_options(broker_wait=10.0, prepare=lambda given: {"topics": flow_topics(given["flow"])})
@click.option("--from-topic", type=TopicName(), help="Replay the events of this topic (default: the flow's "
              "errors topic; e.g. its enriched topic to run leads again after a rule change).")  # fmt: skip
@filter_options(reason=True)
@click.option(
    "--since", type=TimeParam(), help="Only events written at or after this time (ISO, or ago: 2h)."
)
@click.option("--until", type=TimeParam(), help="Only events written at or before this time.")
@click.option("--dry-run", is_flag=True, help="Count and show what would be sent; send nothing.")
@click.option(
    "--again", is_flag=True, help="Also events already replayed (a message on the input topic names them)."
)
@click.option(
    "--include-bad", is_flag=True, help="Also bad inputs (no usable lead: not JSON, too large, ...)."
)
def replay(
    flow: str,
    topics: Topics,
    kafka: KafkaConnection,
    from_topic: str | None,
    outcomes: tuple[str, ...],
    ids: tuple[str, ...],
    steps: tuple[str, ...],
    reason: str | None,
    since: int | None,
    until: int | None,
    dry_run: bool,
    again: bool,
    include_bad: bool,
) -> None:
    """Send the leads of FLOW's error events (or --from-topic's) back to FLOW's input topic."""
    source = from_topic or topics.errors
    filters = Filters(frozenset(outcomes), frozenset(ids), frozenset(steps), reason, since, until)
    plan = run_read(_plan(kafka, source, topics.input, filters, again, include_bad), f"to read {source}")
    if dry_run:
        for event, _, _ in plan.send:
            click.echo(human(event))
    elif plan.send:
        run_read(_send(kafka, topics.input, plan.send), f"to write to {topics.input}")
    verb = "would replay" if dry_run else "replayed"
    line = (
        f"{verb} {len(plan.send)} of {plan.matching} matching events ({plan.already} already replayed, "
        f"{plan.bad_skipped} bad inputs skipped)"
    )
    extra = []
    if plan.from_event:
        extra.append(f"{plan.from_event} from the event's lead: their input is no longer on the topic")
    if plan.unavailable:
        extra.append(f"{plan.unavailable} left out: their input is gone and the event holds only its start")
    click.echo(line + ("; " + "; ".join(extra) if extra else ""), err=True)  # one line, unwrapped


async def _plan(
    kafka: KafkaConnection, source: str, target: str, filters: Filters, again: bool, include_bad: bool
) -> Plan:
    plan = Plan()
    chosen: list[tuple[TopicRecord, View]] = []
    async with TopicReader(kafka, [source]) as reader:
        starts = await reader.offsets_at(
            Start("time", filters.since_ms) if filters.since_ms else Start("beginning")
        )
        async for record in reader.to_end(starts):
            seen = view(record)
            if seen.kind != "event" or not filters.match(record, seen):
                continue
            plan.matching += 1
            if not isinstance(seen.event.get("lead"), dict) and not include_bad:
                plan.bad_skipped += 1
                continue
            chosen.append((record, seen))
    if chosen and not again:
        done = await _replayed(kafka, target, min(record.timestamp_ms for record, _ in chosen))
        plan.already = sum(record.coordinates in done for record, _ in chosen)
        chosen = [(record, seen) for record, seen in chosen if record.coordinates not in done]
    originals = await read_at(kafka, [where for _, seen in chosen if (where := input_of(seen))])
    for record, seen in chosen:
        original = originals.get(input_of(seen) or "")
        if original is not None:
            plan.send.append((record, original.key, original.value or b""))
            continue
        value = _from_event(seen)
        if value is None:
            plan.unavailable += 1
            continue
        plan.from_event += 1
        plan.send.append((record, record.key if isinstance(seen.event.get("lead"), dict) else None, value))
    return plan


async def _replayed(kafka: KafkaConnection, target: str, since_ms: int) -> set[str]:
    """The events (coordinates) that messages on the input topic say they replay. Only
    messages written after the oldest event to replay are read: a replay comes later."""
    found: set[str] = set()
    async with TopicReader(kafka, [target]) as reader:
        starts = await reader.offsets_at(Start("time", since_ms))
        async for record in reader.to_end(starts):
            named = record.header(REPLAYED_FROM)
            if named is not None:
                found.add(named.decode("utf-8", errors="replace"))
    return found


def _from_event(seen: View) -> bytes | None:
    """The lead to send when its input message is gone: the event's lead, or the raw
    bytes of a bad input when the event holds them whole."""
    lead = seen.event.get("lead")
    if isinstance(lead, dict):
        return orjson.dumps(lead)
    raw = seen.event.get("raw")
    if not isinstance(raw, str):
        return None
    value = base64.b64decode(raw)
    whole = seen.event.get("raw_bytes", len(value))
    return value if whole == len(value) else None


async def _send(
    kafka: KafkaConnection, topic: str, messages: list[tuple[TopicRecord, bytes | None, bytes]]
) -> int:
    """Produce the leads with their replay headers; a progress bar on stderr."""
    from aiokafka import AIOKafkaProducer
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z").encode()
    producer = AIOKafkaProducer(**kafka.client_options(), acks="all", linger_ms=5)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        await producer.start()
        with Progress(*columns, console=err) as progress:
            task = progress.add_task(f"replaying to {topic}", total=len(messages))
            for start in range(0, len(messages), 500):
                chunk = messages[start : start + 500]
                futures = [
                    await producer.send(
                        topic, value, key=key,
                        headers=[(REPLAYED_FROM, event.coordinates.encode()), (REPLAYED_AT, at)],
                    )
                    for event, key, value in chunk
                ]  # fmt: skip
                await asyncio.gather(*futures)  # acknowledged before the next chunk is counted
                progress.update(task, completed=start + len(chunk))
    finally:
        await producer.stop()
    return len(messages)
