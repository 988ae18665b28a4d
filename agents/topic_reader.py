"""Reading topics without a consumer group, for tail, replay and trace: where to start
(beginning, end, an offset, a time), where to stop (the high watermarks seen when
reading began, or never: follow), and "the last N" messages of each topic.

No group: every partition is assigned by hand, so an operator's read never joins or
disturbs the worker's group and commits nothing. Kafka has no "read backwards": the
last N are found by reading a window at the end of each partition, widened until it
holds enough (see :meth:`TopicReader.last`).

Committed records only (``agents.kafka_io.READ_COMMITTED``): an aborted transaction's
records never show, ``end`` is the last stable offset, and every read to an end stops by
the consumer's position, which passes the offsets that transaction markers take.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.kafka_connection import KafkaConnection
from agents.kafka_io import READ_COMMITTED, partition_counts
from streams.durations import parse_duration

Header = tuple[str, bytes]


class MissingTopics(Exception):
    """Topics that do not exist; ``str()`` is the one line to show."""


@dataclass(frozen=True)
class TopicRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: tuple[Header, ...] = ()

    @property
    def coordinates(self) -> str:
        """``topic/partition/offset``: how events (``input``) and replay headers name a message."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name`` (Kafka allows repeats; the last one is the newest)."""
        found = [value for key, value in self.headers if key == name]
        return found[-1] if found else None


# -- where to start --------------------------------------------------------------------

RELATIVE = re.compile(r"^\s*\d+(?:\.\d+)?\s*(ms|s|m|h|d)\s*$")


def parse_time(text: str, now: datetime | None = None) -> int:
    """Milliseconds since the epoch for an ISO 8601 time (``2026-12-01T10:00:00Z``, a date;
    without a zone it is UTC) or a time ago (``90s``, ``10m``, ``2h``, ``1d``). ValueError
    with a readable message otherwise."""
    now = now or datetime.now(UTC)
    if RELATIVE.match(text):
        return int((now.timestamp() - parse_duration(text)) * 1000)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: give an ISO time (2026-12-01T10:00:00Z) or a time ago (10m, 2h, 1d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class Start:
    """``beginning``, ``end``, an offset (the same in every partition) or a time (ms)."""

    kind: str
    value: int = 0

    @classmethod
    def parse(cls, text: str, now: datetime | None = None) -> Start:
        word = text.strip().lower()
        if word in ("beginning", "end"):
            return cls(word)
        if word.isdigit():
            return cls("offset", int(word))
        return cls("time", parse_time(text, now))


def iso(timestamp_ms: int) -> str:
    """A record's timestamp as people read it (UTC, milliseconds)."""
    moment = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- reading ------------------------------------------------------------------------------


class TopicReader:
    """Every partition of ``topics``, assigned (no group, no commits). Use as ``async with``;
    ``begin`` and ``end`` are each partition's first and next offsets when it opened."""

    def __init__(
        self, kafka: KafkaConnection | str, topics: Iterable[str], fetch_records: int = 5000
    ) -> None:
        self.kafka = KafkaConnection.of(kafka)
        self.topics = list(dict.fromkeys(topics))
        self.fetch_records = fetch_records
        self.partitions: list[TopicPartition] = []
        self.begin: dict[TopicPartition, int] = {}
        self.end: dict[TopicPartition, int] = {}
        self.consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> TopicReader:
        counts = await partition_counts(self.kafka, self.topics)
        missing = [topic for topic in self.topics if topic not in counts]
        if missing:
            raise MissingTopics(
                f"no topic {', '.join(missing)} at {self.kafka.bootstrap} (a flow's worker creates its "
                "topics when it starts; or this user may not describe it)"
            )
        self.partitions = [TopicPartition(t, p) for t in self.topics for p in range(counts[t])]
        consumer = AIOKafkaConsumer(
            **self.kafka.client_options(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # an offset deleted under us: the oldest kept
            max_poll_records=self.fetch_records,
            isolation_level=READ_COMMITTED,
        )
        try:
            await consumer.start()
            consumer.assign(self.partitions)
            self.begin = await consumer.beginning_offsets(self.partitions)
            self.end = await consumer.end_offsets(self.partitions)
        except BaseException:
            await consumer.stop()
            raise
        self.consumer = consumer
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    def _consumer(self) -> AIOKafkaConsumer:
        assert self.consumer is not None, "use TopicReader with `async with`"
        return self.consumer

    async def offsets_at(self, start: Start) -> dict[TopicPartition, int]:
        """Each partition's first offset to read for ``start`` (kept between begin and end)."""
        if start.kind == "beginning":
            return dict(self.begin)
        if start.kind == "end":
            return dict(self.end)
        if start.kind == "offset":
            return {tp: min(max(start.value, self.begin[tp]), self.end[tp]) for tp in self.partitions}
        found = await self._consumer().offsets_for_times({tp: start.value for tp in self.partitions})
        # None: no message at or after that time in the partition: nothing to read there.
        return {
            tp: (found[tp].offset if found.get(tp) is not None else self.end[tp]) for tp in self.partitions
        }

    async def read(
        self, starts: dict[TopicPartition, int], stops: dict[TopicPartition, int] | None = None
    ) -> AsyncIterator[TopicRecord]:
        """Records from ``starts`` up to ``stops`` (exclusive; None: follow, never ends), in
        each partition's order; partitions interleave as fetched."""
        consumer = self._consumer()
        partitions = [tp for tp in self.partitions if tp in starts]
        for tp in partitions:
            consumer.seek(tp, starts[tp])
        pending = {tp for tp in partitions if stops is None or starts[tp] < stops.get(tp, 0)}
        idle = [tp for tp in self.partitions if tp not in pending]
        if idle:
            consumer.pause(*idle)  # no fetches for partitions with nothing to read
        if pending:
            consumer.resume(*pending)  # (paused by an earlier read that finished them)
        while pending:
            fetched = await consumer.getmany(*pending, timeout_ms=500)
            for tp, messages in fetched.items():
                for message in messages:
                    if stops is not None and message.offset >= stops[tp]:
                        break
                    yield record_of(message)
            if stops is None:
                continue
            # Stop by position, not by the last record seen: transaction markers and
            # compacted records take offsets no record is fetched at.
            for tp in list(pending):
                if await consumer.position(tp) >= stops[tp]:
                    pending.discard(tp)
                    consumer.pause(tp)

    async def to_end(self, starts: dict[TopicPartition, int]) -> AsyncIterator[TopicRecord]:
        """From ``starts`` to the ends seen when the reader opened."""
        async for record in self.read(starts, self.end):
            yield record

    async def newest(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, TopicRecord]:
        """The last record of each of ``partitions`` that has one. The offset before the end
        may be a transaction marker or an aborted record: a window before the end is read,
        from 1 offset wide, 4 times wider while it holds no record."""
        found: dict[TopicPartition, TopicRecord] = {}
        window = 1
        read_from = dict(self.end)
        todo = [tp for tp in partitions if self.end[tp] > self.begin[tp]]
        while todo:
            starts = {tp: max(self.begin[tp], read_from[tp] - window) for tp in todo}
            async for record in self.read(starts, {tp: read_from[tp] for tp in todo}):
                found[TopicPartition(record.topic, record.partition)] = record  # in order: the last wins
            read_from.update(starts)
            todo = [tp for tp in todo if tp not in found and read_from[tp] > self.begin[tp]]
            window *= 4
        return found

    async def count(
        self, starts: dict[TopicPartition, int], stops: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """The records from ``starts`` to ``stops`` (kept within the reader's begin and end):
        their offsets, less the transaction markers and aborted records between."""
        spans = {tp: (max(starts[tp], self.begin[tp]), min(stops[tp], self.end[tp])) for tp in starts}
        counted = dict.fromkeys(starts, 0)
        reading = {tp: span for tp, span in spans.items() if span[0] < span[1]}
        async for record in self.read(
            {tp: a for tp, (a, _) in reading.items()}, {tp: b for tp, (_, b) in reading.items()}
        ):
            counted[TopicPartition(record.topic, record.partition)] += 1
        return counted

    async def last(self, count: int, match: Callable[[TopicRecord], bool]) -> list[TopicRecord]:
        """The last ``count`` records of each topic that ``match``, by timestamp over all of
        its partitions, oldest first.

        Each partition is read from ``end - window`` to its end; the window starts at
        ``count`` and is multiplied by 4 for the partitions that may still hold a newer
        match further back: fewer than ``count`` matches in the window, not at the
        partition's beginning, and the window's oldest record newer than the topic's
        ``count``-th newest match so far. Unfiltered, one window of ``count`` per
        partition is read (more only over transaction markers)."""
        window = {tp: count for tp in self.partitions}
        found: dict[TopicPartition, list[TopicRecord]] = {tp: [] for tp in self.partitions}
        oldest: dict[TopicPartition, int] = {}
        read_from = dict(self.end)  # each partition is read from here on already
        todo = [tp for tp in self.partitions if self.end[tp] > self.begin[tp]]
        while todo:
            starts = {tp: max(self.begin[tp], self.end[tp] - window[tp]) for tp in todo}
            async for record in self.read(starts, {tp: read_from[tp] for tp in todo}):
                tp = TopicPartition(record.topic, record.partition)
                oldest[tp] = min(oldest.get(tp, record.timestamp_ms), record.timestamp_ms)
                if match(record):
                    found[tp].append(record)
            read_from.update(starts)
            newest = _newest_by_topic(found, count)
            todo = [
                tp
                for tp in todo
                if len(found[tp]) < count
                and read_from[tp] > self.begin[tp]
                and (tp.topic not in newest or oldest.get(tp, newest[tp.topic]) >= newest[tp.topic])
            ]
            for tp in todo:
                window[tp] *= 4
        by_topic: dict[str, list[TopicRecord]] = {}
        for tp, records in found.items():
            by_topic.setdefault(tp.topic, []).extend(records)
        chosen = [record for records in by_topic.values() for record in sorted(records, key=_when)[-count:]]
        return sorted(chosen, key=_when)


async def read_at(kafka: KafkaConnection | str, wanted: Iterable[str]) -> dict[str, TopicRecord]:
    """The messages at ``wanted`` coordinates (``topic/partition/offset``) that their topics
    still hold, by coordinates. Each partition is read once, from the lowest offset wanted
    to the highest (sparse offsets far apart cost the messages between them)."""
    by_partition: dict[tuple[str, int], set[int]] = defaultdict(set)
    for where in wanted:
        topic, partition, offset = where.rsplit("/", 2)
        by_partition[(topic, int(partition))].add(int(offset))
    if not by_partition:
        return {}
    counts = await partition_counts(kafka, sorted({topic for topic, _ in by_partition}))
    found: dict[str, TopicRecord] = {}
    topics = [topic for topic in dict.fromkeys(t for t, _ in by_partition) if topic in counts]
    if not topics:
        return found
    async with TopicReader(kafka, topics) as reader:
        starts, stops = {}, {}
        for tp in reader.partitions:
            offsets = [o for o in by_partition.get((tp.topic, tp.partition), ()) if o >= reader.begin[tp]]
            offsets = [o for o in offsets if o < reader.end[tp]]
            if offsets:
                starts[tp], stops[tp] = min(offsets), max(offsets) + 1
        async for record in reader.read(starts, stops):
            if record.offset in by_partition[(record.topic, record.partition)]:
                found[record.coordinates] = record
    return found


async def count_between(
    kafka: KafkaConnection | str, spans: dict[tuple[str, int], tuple[int, int]]
) -> dict[tuple[str, int], int]:
    """The committed records in each partition's ``(start, stop)`` offsets (stop exclusive,
    kept below the last stable offset): the offsets less the transaction markers and the
    aborted records between, by (topic, partition)."""
    if not spans:
        return {}
    async with TopicReader(kafka, dict.fromkeys(topic for topic, _ in spans)) as reader:
        starts = {TopicPartition(*where): start for where, (start, _) in spans.items()}
        stops = {TopicPartition(*where): stop for where, (_, stop) in spans.items()}
        counted = await reader.count(starts, stops)
    return {(tp.topic, tp.partition): n for tp, n in counted.items()}


def _when(record: TopicRecord) -> tuple[int, str, int, int]:
    return (record.timestamp_ms, record.topic, record.partition, record.offset)


def _newest_by_topic(found: dict[TopicPartition, list[TopicRecord]], count: int) -> dict[str, int]:
    """Per topic with at least ``count`` matches: the timestamp of its ``count``-th newest."""
    stamps: dict[str, list[int]] = {}
    for tp, records in found.items():
        stamps.setdefault(tp.topic, []).extend(r.timestamp_ms for r in records)
    return {topic: sorted(s)[-count] for topic, s in stamps.items() if len(s) >= count}


def record_of(message: Any) -> TopicRecord:
    """aiokafka's ConsumerRecord as a TopicRecord."""
    return TopicRecord(
        message.topic,
        message.partition,
        message.offset,
        message.key,
        message.value,
        message.timestamp,
        tuple(message.headers or ()),
    )
