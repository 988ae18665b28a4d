"""Input decoding and the output event shapes of DESIGN.md §3."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.outcomes import FlowResult

MAX_LEAD_BYTES = 1024 * 1024
# Kafka's default largest message is 1 MiB with the batch's framing (message.max.bytes
# 1,048,588) and producers default to max.request.size 1,000,000: an output above this
# would be refused again and again and hold its partition back.
MAX_OUTPUT_BYTES = 1_000_000
MAX_LEAD_DEPTH = 32
_ID_NAMESPACE = uuid.UUID("6f1c2c52-43a4-4a8f-9a1e-0c5d1b7c9e10")


@dataclass(frozen=True)
class Source:
    """Where an input message came from."""

    topic: str
    partition: int
    offset: int

    def as_event(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


class BadInput(Exception):
    """The message is not a usable lead; the reason is user-facing."""


def decode_lead(raw: bytes | None, max_bytes: int = MAX_LEAD_BYTES) -> dict[str, Any]:
    if raw is None:
        raise BadInput("empty message (no value)")
    if len(raw) > max_bytes:
        raise BadInput(f"message of {len(raw)} bytes exceeds the {max_bytes}-byte limit")
    try:
        lead = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"not valid JSON: {exc}") from None
    if not isinstance(lead, dict):
        raise BadInput(f"a lead must be a JSON object, got {_json_type(lead)}")
    # Depth never exceeds the number of opening brackets: most leads skip the walk.
    if raw.count(b"{") + raw.count(b"[") > MAX_LEAD_DEPTH and _depth(lead) > MAX_LEAD_DEPTH:
        raise BadInput(f"lead nested deeper than {MAX_LEAD_DEPTH} levels")
    lead_id = lead.get("id")
    if lead_id is not None and (
        isinstance(lead_id, bool) or not isinstance(lead_id, str | int) or lead_id == ""
    ):
        raise BadInput("lead id must be a non-empty string or an integer")
    return lead


def lead_id_for(lead: dict[str, Any] | None, source: Source) -> str:
    """The lead's own id, or one derived deterministically from where it was read,
    so a replay of the same message gets the same id."""
    if lead is not None and lead.get("id") not in (None, ""):
        return str(lead["id"])
    return str(uuid.uuid5(_ID_NAMESPACE, f"{source.topic}/{source.partition}/{source.offset}"))


def timestamp(moment: datetime | None = None) -> str:
    moment = moment or datetime.now(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")  # faster than strftime


def processed_event(
    flow: str, lead_id: str, result: FlowResult, source: Source, received_at: str, version: str = ""
) -> dict[str, Any]:
    """``version``: the flow file's content hash (``flow_version``; ``flow`` stays the name)."""
    event: dict[str, Any] = {
        "id": lead_id,
        "flow": flow,
        "flow_version": version,
        "outcome": result.outcome.value,
        "reason": result.reason,
        "lead": result.lead,
        "steps": [step.as_event() for step in result.steps],
        "received_at": received_at,
        "completed_at": timestamp(),
        "input": source.as_event(),
    }
    if result.outcome.value == "error":
        event["error"] = result.reason or "error"
    return event


def bad_input_event(
    flow: str, raw: bytes | None, source: Source, reason: str, received_at: str, version: str = ""
) -> dict[str, Any]:
    return {
        "id": lead_id_for(None, source),
        "flow": flow,
        "flow_version": version,
        "outcome": "error",
        "reason": reason,
        "error": reason,
        "lead": None,
        "steps": [],
        "raw": base64.b64encode(raw or b"").decode(),
        "input": source.as_event(),
        "received_at": received_at,
        "completed_at": timestamp(),
    }


def oversized_event(event: dict[str, Any], raw: bytes | None, size: int, limit: int) -> dict[str, Any]:
    """What goes to the errors topic instead of an output of ``size`` bytes that Kafka would
    refuse: the outcome it would have carried, the steps (partner calls were made), and as
    much of the input as fits in half the limit; ``input`` says where the whole of it is."""
    raw = raw or b""
    was = f"{event['outcome']} ({str(event['reason'])[:500]})" if event.get("reason") else event["outcome"]
    reason = f"output of {size} bytes exceeds the {limit}-byte limit; the lead's outcome was {was}"
    return {
        "id": event["id"],
        "flow": event["flow"],
        "flow_version": event.get("flow_version", ""),
        "outcome": "error",
        "reason": reason,
        "error": reason,
        "lead": None,
        "steps": event.get("steps", []),
        "raw": raw_prefix(raw, limit),
        "raw_bytes": len(raw),
        "output_bytes": size,
        "input": event["input"],
        "received_at": event["received_at"],
        "completed_at": event["completed_at"],
    }


def raw_prefix(raw: bytes | None, limit: int) -> str:
    """Base64 of as much of ``raw`` as fits in half of ``limit`` (base64 makes 4 bytes of 3)."""
    return base64.b64encode((raw or b"")[: limit // 2 // 4 * 3]).decode()


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_LEAD_DEPTH:
            return deepest
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest
