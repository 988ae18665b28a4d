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
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, for_code
from aiokafka.structs import OffsetAndMetadata

from agents.faust_seam.assignment import member_assignment
from agents.kafka_connection import KafkaConnection
from agents.kafka_io import admin_client
from agents.topic_lookup import existing_partitions

INSTANCE_URL = "http://leadstreams.invalid/instance/"  # agents.faust_settings.stable_url
LAST_RECORD_WAIT_S = 5.0  # for the last record of each output partition (one fetch on a live broker)
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
    end: int  # the high watermark: the offset the next record will get
    member: str | None  # who owns it now (Member.name)

    @property
    def lag(self) -> int:
        """Records not yet processed; with no commit, the worker starts at the earliest."""
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
            "partitions": [{**asdict(p), "lag": p.lag} for p in self.positions],
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
    starts, ends = await _offsets(kafka, reading, outputs, status)
    for tp in reading:
        done = committed.get(tp)
        offset = done.offset if done is not None and done.offset >= 0 else None
        position = Position(tp.topic, tp.partition, offset, starts[tp], ends[tp], owners.get(tp))
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
    kafka: KafkaConnection, reading: list[TopicPartition], outputs: list[TopicPartition], status: GroupStatus
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """The first and end offsets of every partition; the outputs' last records into ``status``."""
    if not reading and not outputs:  # (a consumer stopped at once raises CancelledError in aiokafka)
        return {}, {}
    consumer = AIOKafkaConsumer(**kafka.client_options(), group_id=None, enable_auto_commit=False)
    try:  # (a start that fails still stops: no "Unclosed AIOKafkaConsumer" at exit)
        await consumer.start()
        starts = await consumer.beginning_offsets([*reading, *outputs])
        ends = await consumer.end_offsets([*reading, *outputs])
        status.outputs = await _last_records(consumer, outputs, starts, ends)
    finally:
        await consumer.stop()
    return starts, ends


def _member(raw: dict[str, Any]) -> Member:
    """A member from DescribeGroups: its assignment is the consumer protocol's (topics and
    partitions) for any assignor; Faust's user data adds the worker's URL."""
    partitions, url = member_assignment(raw["member_assignment"])
    host = raw["client_host"].lstrip("/")  # the broker writes "/10.0.0.7"
    return Member(raw["member_id"], raw["client_id"], host, url, partitions)


async def _last_records(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    starts: dict[TopicPartition, int],
    ends: dict[TopicPartition, int],
) -> list[LastOutput]:
    """The last record of each partition: read from one before its end."""
    found: dict[TopicPartition, LastOutput] = {}
    filled = [tp for tp in partitions if ends[tp] > starts[tp]]
    if filled:
        consumer.assign(filled)
        for tp in filled:
            consumer.seek(tp, ends[tp] - 1)
        deadline = time.monotonic() + LAST_RECORD_WAIT_S
        while len(found) < len(filled) and time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=200)
            for tp, records in fetched.items():
                last = [r for r in records if r.offset < ends[tp]]
                if last:
                    found[tp] = _output(tp, ends[tp], last[-1])
    return [found.get(tp) or LastOutput(tp.topic, tp.partition, ends[tp]) for tp in partitions]


def _output(tp: TopicPartition, end: int, record: Any) -> LastOutput:
    """What an output event says of its lead (its id, outcome, reason), if it is one."""
    try:
        event = orjson.loads(record.value or b"")
    except orjson.JSONDecodeError:
        event = None
    said = event if isinstance(event, dict) else {}
    text = {key: str(said[key]) if said.get(key) is not None else None for key in ("id", "outcome", "reason")}
    return LastOutput(tp.topic, tp.partition, end, record.offset, record.timestamp, **text)
