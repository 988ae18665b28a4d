"""A flow's consumer group as Kafka sees it, for ``leadstreams status``: the group's state
and members with their partitions, the committed offset, end offset and lag of every
partition the group reads, and the last record of every output partition. Admin and
consumer requests only: the group itself is not joined, and no topic is created."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import unquote

import orjson
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, for_code
from aiokafka.structs import OffsetAndMetadata

from agents.faust_seam.assignment import member_assignment
from agents.kafka_connection import KafkaConnection
from agents.kafka_io import admin_client
from agents.topic_lookup import existing_partitions
from agents.topic_reader import TopicReader, TopicRecord

INSTANCE_URL = "http://leadstreams.invalid/instance/"  # agents.faust_settings.stable_url
COUNTED_LAG = 1000  # a lag of up to this many offsets is counted in records (read: ~1 ms per 100)
COORDINATOR_WAIT_S = 10.0  # a coordinator being elected or loading answers "not available"


@dataclass(frozen=True)
class Member:
    member_id: str
    client_id: str
    host: str
    url: str | None  # a Faust worker's canonical URL: its web host:port, or its --instance-id
    partitions: dict[str, list[int]]  # topic -> partitions assigned

    @property
    def name(self) -> str:
        """How status names it: the --instance-id, else the web host:port, else the member id."""
        if self.url and self.url.startswith(INSTANCE_URL):
            return unquote(self.url.removeprefix(INSTANCE_URL))
        return self.url.removeprefix("http://") if self.url else self.member_id


@dataclass(frozen=True)
class Position:
    """A partition the group reads: where it is and how far behind the end."""

    topic: str
    partition: int
    committed: int | None  # None: nothing committed yet
    start: int  # the first offset still in the log (retention may have deleted before it)
    end: int  # the last stable offset: the high watermark, or the first offset of a transaction still open
    member: str | None  # who owns it now (Member.name)
    records: int | None = None  # the records from committed to end, when they were counted

    @property
    def lag(self) -> int:
        """Records not yet processed; with no commit, the worker starts at the earliest.
        Uncounted, the offsets between (transaction markers take offsets too)."""
        if self.records is not None:
            return self.records
        return self.end - max(self.committed if self.committed is not None else self.start, self.start)


@dataclass(frozen=True)
class LastOutput:
    topic: str
    partition: int
    end: int
    offset: int | None = None  # None: the partition is empty
    timestamp_ms: int | None = None
    id: str | None = None
    outcome: str | None = None
    reason: str | None = None


@dataclass
class GroupStatus:
    group: str
    state: str  # Stable, PreparingRebalance, CompletingRebalance, Empty, Dead (no such group)
    protocol: str
    members: list[Member] = field(default_factory=list)
    positions: list[Position] = field(default_factory=list)
    outputs: list[LastOutput] = field(default_factory=list)
    missing_topics: list[str] = field(default_factory=list)

    @property
    def lag(self) -> int:
        return sum(position.lag for position in self.positions)

    def as_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "state": self.state,
            "protocol": self.protocol,
            "members": [{"name": member.name, **asdict(member)} for member in self.members],
            "lag": self.lag,
            "partitions": [{**_without(asdict(p), "records"), "lag": p.lag} for p in self.positions],
            "outputs": [asdict(output) for output in self.outputs],
            "missing_topics": self.missing_topics,
        }


async def group_status(
    kafka: KafkaConnection, group: str, read: list[str], written: list[str]
) -> GroupStatus:
    """The status of ``group`` over the topics it ``read``s and the ones its flow has ``written``."""
    async with admin_client(kafka) as admin:
        counts = await existing_partitions(admin, [*read, *written])
        described, committed = await _describe(admin, group)
    status = GroupStatus(group, described["state"], described["protocol"])
    status.members = [_member(raw) for raw in described["members"]]
    status.missing_topics = [name for name in dict.fromkeys([*read, *written]) if name not in counts]
    owners = {(t, p): m.name for m in status.members for t, ps in m.partitions.items() for p in ps}
    reading = [TopicPartition(t, p) for t in dict.fromkeys(read) if t in counts for p in range(counts[t])]
    outputs = [TopicPartition(t, p) for t in dict.fromkeys(written) if t in counts for p in range(counts[t])]
    done = {tp: meta.offset for tp, meta in committed.items() if meta is not None and meta.offset >= 0}
    starts, ends, counted = await _offsets(kafka, reading, outputs, done, status)
    for tp in reading:
        position = Position(
            tp.topic, tp.partition, done.get(tp), starts[tp], ends[tp], owners.get(tp), counted.get(tp)
        )
        status.positions.append(position)
    return status


async def _describe(
    admin: AIOKafkaAdminClient, group: str
) -> tuple[dict[str, Any], dict[TopicPartition, OffsetAndMetadata]]:
    """The group's description and committed offsets, asked again while its coordinator
    is not ready: a fresh cluster creates __consumer_offsets on the first group request,
    and a coordinator loads its groups after a broker restart."""
    deadline = time.monotonic() + COORDINATOR_WAIT_S
    while True:
        try:
            (described,) = (await admin.describe_consumer_groups([group]))[0].to_object()["groups"]
            if described["error_code"]:
                raise for_code(described["error_code"])(f"describing group {group}")
            return described, await admin.list_consumer_group_offsets(group)
        except KafkaError as exc:
            if not exc.retriable or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.2)  # polling the coordinator, bounded by the deadline


async def _offsets(
    kafka: KafkaConnection,
    reading: list[TopicPartition],
    outputs: list[TopicPartition],
    committed: dict[TopicPartition, int],
    status: GroupStatus,
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int], dict[TopicPartition, int]]:
    """The first and end offsets of every partition, the records between the committed
    offset and the end of the partitions a little behind, and the outputs' last records
    into ``status``."""
    if not reading and not outputs:  # (a consumer stopped at once raises CancelledError in aiokafka)
        return {}, {}, {}
    topics = list(dict.fromkeys(tp.topic for tp in [*reading, *outputs]))
    async with TopicReader(kafka, topics) as reader:
        last = await reader.newest(outputs)
        status.outputs = [
            _output(tp, reader.end[tp], last[tp])
            if tp in last
            else LastOutput(tp.topic, tp.partition, reader.end[tp])
            for tp in outputs
        ]
        # Offsets overstate a lag by the transaction markers between (one per transaction):
        # a partition written in transactions and read to its end still shows 1. A few
        # offsets behind, the records are read and counted; far behind, offsets are close.
        behind = {
            tp: committed[tp]
            for tp in reading
            if tp in committed and 0 < reader.end[tp] - committed[tp] <= COUNTED_LAG
        }
        counted = await reader.count(behind, reader.end) if behind else {}
        return reader.begin, reader.end, counted


def _without(fields: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if key != name}


def _member(raw: dict[str, Any]) -> Member:
    """A member from DescribeGroups: its assignment is the consumer protocol's (topics and
    partitions) for any assignor; Faust's user data adds the worker's URL."""
    partitions, url = member_assignment(raw["member_assignment"])
    host = raw["client_host"].lstrip("/")  # the broker writes "/10.0.0.7"
    return Member(raw["member_id"], raw["client_id"], host, url, partitions)


def _output(tp: TopicPartition, end: int, record: TopicRecord) -> LastOutput:
    """What an output event says of its lead (its id, outcome, reason), if it is one."""
    try:
        event = orjson.loads(record.value or b"")
    except orjson.JSONDecodeError:
        event = None
    said = event if isinstance(event, dict) else {}
    text = {key: str(said[key]) if said.get(key) is not None else None for key in ("id", "outcome", "reason")}
    return LastOutput(tp.topic, tp.partition, end, record.offset, record.timestamp_ms, **text)
