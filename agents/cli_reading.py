"""What tail, replay and trace share: running a read (one line for a missing topic or a
refusal, Ctrl-C a clean stop), the filter options, a time option, and a flow's topics
read from its file without its secrets."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from agents.cli_errors import EXIT_INTERRUPTED, fail
from streams.flow import Topics

T = TypeVar("T")
EXIT_FLOW_FILE = 2


def run_read(call: Coroutine[Any, Any, T], hint: str, interrupt_ok: bool = False) -> T:
    """Run a read: a missing topic or Kafka's refusal is one line and exit 3; Ctrl-C ends
    it (its consumer closed by the cancellation) with exit 0 when ``interrupt_ok`` (a
    follow has no other end), else one line and exit 130. A closed stdout (``| head``)
    ends it quietly."""
    from aiokafka.errors import KafkaError

    from agents.kafka_errors import EXIT_KAFKA
    from agents.topic_reader import MissingTopics

    try:
        return asyncio.run(call)
    except MissingTopics as exc:
        fail(str(exc), EXIT_KAFKA)
    except KafkaError as exc:
        fail(f"Kafka refused {hint}: {exc}", EXIT_KAFKA)
    except KeyboardInterrupt:
        if interrupt_ok:
            sys.exit(0)
        fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:  # the reader of stdout left (head, less): nothing more to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # (Python's exit flush would fail again)
        sys.exit(0)


class TimeParam(click.ParamType):
    """An ISO time or a time ago (10m, 2h, 1d), as milliseconds since the epoch."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from agents.topic_reader import parse_time

        if isinstance(value, int):
            return value
        try:
            return parse_time(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def filter_options(reason: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--outcome, --id, --step (each repeatable), and --reason for replay."""
    options = [
        click.option("--outcome", "outcomes", multiple=True, metavar="OUTCOME",
                     help="Only events with this outcome (success, failure, error, skip; deferred for a "
                     "retry tier; delivered, failed, ... for notification attempts). Repeatable."),
        click.option("--id", "ids", multiple=True, metavar="ID",
                     help="Only messages about this lead: an event's id, an attempts event's lead_id, "
                     "a lead's id, or the message key. Repeatable."),
        click.option("--step", "steps", multiple=True, metavar="STEP",
                     help="Only events in which this step ran (and notifications of this step). Repeatable."),
    ]  # fmt: skip
    if reason:
        options.append(click.option("--reason", metavar="TEXT", help="Only events whose reason contains "
                                    "TEXT (case-insensitive)."))  # fmt: skip

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def flow_topics(path: str) -> Topics:
    """The ``topics:`` of a flow file, ``${VARIABLES}`` substituted: an operator replaying or
    tracing needs the topic names, not the partners' secrets the whole flow would."""
    from streams.envsubst import substitute
    from streams.problems import FlowFileError
    from streams.yaml_source import parse_yaml, read_source

    try:
        data = parse_yaml(read_source(path), path).data
    except FlowFileError as exc:
        fail(f"flow {path}: {exc.problems[0].message}", EXIT_FLOW_FILE)
    raw = data.get("topics") if isinstance(data, dict) else None
    if not isinstance(raw, dict) or not all(k in raw for k in ("input", "enriched", "errors")):
        fail(f"flow {path}: no topics: {{input, enriched, errors}} in the file", EXIT_FLOW_FILE)
    topics, missing = substitute(raw, os.environ, ("topics",), schema=None)
    if missing:
        fail(f"flow {path}: topics.{missing[0].path[-1]}: {missing[0]}", EXIT_FLOW_FILE)
    known = {key: str(value) for key, value in topics.items() if key in Topics.__dataclass_fields__}
    return Topics(**known)
