"""The topic command ``publish`` (a file of leads to a topic); ``tail`` is in agents.cli_tail."""

from __future__ import annotations

from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agents.cli_common import err
from agents.cli_errors import EXIT_USAGE, TopicName, fail, say
from agents.cli_kafka import kafka_call, kafka_options
from agents.kafka_connection import KafkaConnection
from agents.lead_file import Entry, LeadFile

BAD_LISTED = 50  # a wrong file (a CSV, a log) would print every line otherwise
SHAPES = "FILE is JSON lines (one JSON object, a lead, per line) or one JSON array of objects"
ALLOW_BAD = "--allow-bad sends bad lines as-is"


def _prepare_publish(arguments: dict[str, Any]) -> dict[str, Any]:
    """FILE read and checked before any contact with Kafka: a file with entries that are
    not JSON objects is refused (unless --allow-bad) with every one of them named, so a
    wrong file costs no wait for a broker and sends nothing."""
    from agents.lead_file import read_leads

    file = arguments["file"]
    leads = read_leads(file.read())
    bad = leads.bad
    if bad and not arguments["allow_bad"]:
        if len(bad) == 1:
            why = f"{_where(file.name, bad[0])}; nothing sent: {SHAPES} ({ALLOW_BAD})"
            raise click.BadParameter(why, param_hint="'FILE'")
        for entry in bad[:BAD_LISTED]:
            say.plain(_where(file.name, entry))
        more = f"; {len(bad) - BAD_LISTED} more not listed" if len(bad) > BAD_LISTED else ""
        entries = "lines" if leads.shape == "JSON lines" else "entries"
        why = f"{len(bad)} of {len(leads.entries)} {entries} are not JSON objects (above{more}); nothing sent"
        raise click.BadParameter(f"{why}: {SHAPES} ({ALLOW_BAD})", param_hint="'FILE'")
    return {"leads": leads}


def _where(name: str, entry: Entry) -> str:
    """``FILE:3: not JSON (...)`` for a line, ``FILE: element 2: ...`` for an array's."""
    at = f" {entry.where}" if entry.where.startswith("element") else entry.where
    return f"{name}:{at}: {entry.problem}"


@click.command()
@click.argument("topic", type=TopicName())
@click.argument("file", type=click.File("rb"))
@kafka_options(broker_wait=10.0, prepare=_prepare_publish)
@click.option(
    "--allow-bad",
    is_flag=True,
    help="Send entries that are not JSON objects as they are (to "
    "try the errors topic); without it such a FILE is refused, each bad line named.",
)
@click.option(
    "--create",
    is_flag=True,
    help="Create TOPIC when it does not exist, with --partitions and "
    "the broker's default replication factor; without it a missing TOPIC is refused.",
)
@click.option("--partitions", default=4, show_default=True, type=click.IntRange(min=1),
              help="Partitions of a TOPIC made by --create (the worker's default).")  # fmt: skip
def publish(
    topic: str,
    file: Any,
    leads: LeadFile,
    kafka: KafkaConnection,
    allow_bad: bool,
    create: bool,
    partitions: int,
) -> None:
    """Publish FILE's leads to TOPIC, key = the lead's id.

    FILE is JSON lines (each line sent as written), or a .json file holding one JSON
    array of leads (one message each) or one lead, pretty-printed or not. A FILE with
    an entry that is not a JSON object is refused, every such line named, unless
    --allow-bad. TOPIC must exist (the worker creates its flow's topics), unless
    --create: a broker that creates topics on first use makes them with 1 partition.
    """
    from agents.kafka_io import publish as publish_messages

    _topic_or_exit(kafka, topic, create, partitions)
    messages = leads.messages(allow_bad)
    with _progress() as progress:
        task = progress.add_task(f"publishing to {topic}", total=len(messages))
        sent = lambda n: progress.update(task, completed=n)  # noqa: E731
        sending = publish_messages(kafka, topic, messages, on_sent=sent)
        count = kafka_call(sending, f"the messages for {topic}")
    bad = f" ({len(leads.bad)} of them not a JSON object: --allow-bad)" if allow_bad and leads.bad else ""
    shape = "" if leads.shape == "JSON lines" else f" from {leads.shape}"
    err.print(f"published {count} message(s) to {topic}{shape}{bad}", highlight=False, soft_wrap=True)


def _topic_or_exit(kafka: KafkaConnection, topic: str, create: bool, partitions: int) -> None:
    """TOPIC exists, or is made with --create; else one line and exit 2 (as a missing FILE).
    Asked without naming it: a producer's first send would have the broker create it."""
    from agents.kafka_io import admin_client, ensure_topics
    from agents.topic_lookup import existing_partitions

    async def lookup() -> dict[str, int]:
        async with admin_client(kafka) as admin:
            return await existing_partitions(admin, [topic])

    if topic in kafka_call(lookup(), f"to list the topics (publish needs Describe on {topic})"):
        return
    if not create:
        fail(f"topic {topic} does not exist at {kafka.bootstrap}: start the flow's worker first (it creates "
             "its topics), or pass --create", EXIT_USAGE)  # fmt: skip
    kafka_call(ensure_topics(kafka, [topic], partitions), f"to create {topic}")
    err.print(f"created topic {topic} with {partitions} partition(s)", highlight=False, soft_wrap=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    )
