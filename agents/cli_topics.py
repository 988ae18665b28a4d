"""The topic command ``publish`` (JSON lines to a topic); ``tail`` is in agents.cli_tail."""

from __future__ import annotations

from typing import Any

import click
import orjson
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agents.cli_common import err
from agents.cli_errors import TopicName
from agents.cli_kafka import kafka_call, kafka_options
from agents.kafka_connection import KafkaConnection


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


@click.command()
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


def _key_of(lead: object) -> bytes | None:
    if isinstance(lead, dict) and isinstance(lead.get("id"), str | int):
        return str(lead["id"]).encode()
    return None


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    )
