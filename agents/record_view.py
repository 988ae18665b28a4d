"""What a message on a flow's topics says, for people: its kind (a lead, an output
event, a deferred lead, a notification, an attempts event), the lead it is about, its
outcome and reason; the filters of tail, replay and trace; the human and JSON lines."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from agents.topic_reader import TopicRecord, iso
from streams.delayed import ATTEMPT, ORIGIN_OFFSET, ORIGIN_PARTITION, ORIGIN_TOPIC, REASON

REPLAYED_FROM = "leadstreams-replayed-from"  # topic/partition/offset of the event replayed
REPLAYED_AT = "leadstreams-replayed-at"  # when (ISO time)
REASON_WIDTH = 160  # a human line stays one line


@dataclass(frozen=True)
class View:
    kind: str  # event | attempts | notification | deferred | lead | other
    ids: frozenset[str]  # the lead ids it is about (its key among them)
    outcome: str | None = None
    reason: str | None = None
    steps: tuple[str, ...] = ()
    data: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def event(self) -> dict[str, Any]:
        """The JSON object of the message ({} when it is none)."""
        return self.data or {}


def decode(value: bytes | None) -> dict[str, Any] | None:
    try:
        data = orjson.loads(value) if value else None
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def text(value: bytes | None) -> str | None:
    return value.decode("utf-8", errors="replace") if value is not None else None


def view(record: TopicRecord) -> View:
    """Read ``record`` as one of the messages a flow writes or reads."""
    data = decode(record.value)
    ids = {text(record.key)} if record.key else set()
    if record.header(ATTEMPT) is not None:  # a lead waiting on a delayed-retry tier
        attempt = text(record.header(ATTEMPT))
        if data is not None and data.get("id") not in (None, ""):
            ids.add(str(data["id"]))
        why = text(record.header(REASON)) or ""
        return View("deferred", _ids(ids), "deferred", f"attempt {attempt}: {why}".rstrip(": "), (), data)
    if data is None:
        return View("other", _ids(ids))
    if {"flow", "outcome", "input"} <= data.keys():  # an output event (enriched or errors)
        ids.add(str(data.get("id")))
        steps = tuple(str(s.get("name")) for s in data.get("steps") or () if isinstance(s, dict))
        return View("event", _ids(ids), str(data["outcome"]), _str(data.get("reason")), steps, data)
    if {"lead_id", "attempt", "result"} <= data.keys():  # a notification's attempts event
        ids.add(str(data["lead_id"]))
        reason = _str(data.get("reason"))
        return View("attempts", _ids(ids), str(data["result"]), reason, (str(data.get("step")),), data)
    if {"lead_id", "idempotency_key"} <= data.keys():  # a notification's record (its queue)
        ids.add(str(data["lead_id"]))
        request = data.get("request") or {}
        where = f"{request.get('method', '')} {request.get('url', '')}".strip()
        return View("notification", _ids(ids), "queued", where or None, (str(data.get("step")),), data)
    if data.get("id") not in (None, ""):
        ids.add(str(data["id"]))
    return View("lead", _ids(ids), data=data)


def origin(record: TopicRecord) -> str | None:
    """A deferred lead's input coordinates (``topic/partition/offset``), from its headers."""
    parts = [record.header(name) for name in (ORIGIN_TOPIC, ORIGIN_PARTITION, ORIGIN_OFFSET)]
    if any(part is None for part in parts):
        return None
    return "/".join(text(part) or "" for part in parts)


def input_of(seen: View) -> str | None:
    """An event's (or a notification record's) input coordinates, ``topic/partition/offset``."""
    where = seen.event.get("input")
    if not isinstance(where, dict) or not {"topic", "partition", "offset"} <= where.keys():
        return None
    return f"{where['topic']}/{where['partition']}/{where['offset']}"


@dataclass(frozen=True)
class Filters:
    """Which messages to show or replay; an empty filter lets everything through."""

    outcomes: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()
    steps: frozenset[str] = frozenset()
    reason: str | None = None  # a substring, case-insensitive
    since_ms: int | None = None
    until_ms: int | None = None

    def __bool__(self) -> bool:
        return bool(self.outcomes or self.ids or self.steps or self.reason) or self.timed

    @property
    def timed(self) -> bool:
        return self.since_ms is not None or self.until_ms is not None

    def match(self, record: TopicRecord, seen: View | None = None) -> bool:
        if self.since_ms is not None and record.timestamp_ms < self.since_ms:
            return False
        if self.until_ms is not None and record.timestamp_ms > self.until_ms:
            return False
        if not (self.outcomes or self.ids or self.steps or self.reason):
            return True
        seen = seen or view(record)
        if self.outcomes and seen.outcome not in self.outcomes:
            return False
        if self.ids and not self.ids & seen.ids:
            return False
        if self.steps and not self.steps & set(seen.steps):
            return False
        return not self.reason or self.reason.lower() in (seen.reason or "").lower()


# -- lines ----------------------------------------------------------------------------------


def human(record: TopicRecord, seen: View | None = None, headers: bool = False, role: str = "") -> str:
    """``TIME TOPIC[P]@OFFSET key=K OUTCOME reason`` in one line; a lead or anything else
    shows the start of its value instead of an outcome."""
    seen = seen or view(record)
    parts = [iso(record.timestamp_ms), f"{record.topic}[{record.partition}]@{record.offset}"]
    parts.append(f"key={text(record.key) if record.key is not None else '-'}")
    if role and role != seen.outcome:  # (a deferred lead's role is its outcome: said once)
        parts.append(role)
    if seen.outcome is not None:
        parts.append(seen.outcome)
        if seen.reason:
            parts.append(_one_line(seen.reason))
    else:
        parts.append(_one_line(text(record.value) or "(no value)"))
    if headers and record.headers:
        parts.append(" ".join(f"{name}={text(value)}" for name, value in record.headers))
    return " ".join(parts)


def as_record(record: TopicRecord) -> dict[str, Any]:
    """The whole message as one JSON object (the value parsed when it is JSON)."""
    value: Any = text(record.value)
    if record.value:
        with contextlib.suppress(orjson.JSONDecodeError):  # not JSON: shown as text
            value = orjson.loads(record.value)
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": iso(record.timestamp_ms),
        "key": text(record.key),
        "headers": {name: text(header) for name, header in record.headers},
        "value": value,
    }


def json_line(record: TopicRecord, whole: bool) -> str:
    """The value as it is (``whole``: the record object of :func:`as_record`)."""
    if whole:
        return orjson.dumps(as_record(record)).decode()
    return text(record.value) if record.value is not None else "null"


def _one_line(value: str) -> str:
    flat = " ".join(value.split())
    return flat if len(flat) <= REASON_WIDTH else flat[: REASON_WIDTH - 1] + "…"


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _ids(ids: set[str | None]) -> frozenset[str]:
    return frozenset(i for i in ids if i)
