"""Notifications of ``notify:`` steps on Kafka: the record queued with a lead, the topics
around it, and the attempts event each delivery round writes.

The record carries what the request is rendered from (the lead, vars and earlier steps'
outcomes as the step saw them, and ``now``), not the rendered request: rendered headers
and URLs carry the integration's secrets (settings), and a secret never sits on a topic.
The delivery renders the request again from the same values: the same body and the same
``Idempotency-Key``, with the settings (and credentials) the delivering worker has.
"""

from __future__ import annotations

from typing import Any

import orjson

from streams.events import Source, timestamp
from streams.step.notify import QueuedNotification, context_of

RESULTS = "results"  # attempts events: NAME.results
RETRY = "retry"  # important ones' delayed-retry tiers: NAME.retry.<delay>


def results_topic(queue: str) -> str:
    return f"{queue}.{RESULTS}"


def tier_prefix(queue: str) -> str:
    return f"{queue}.{RETRY}"


def notification_record(
    flow: str, lead_id: str, notification: QueuedNotification, source: Source, url: str, version: str = ""
) -> bytes:
    """The record on topics.notifications (``url``: the rendered URL, masked, for people)."""
    header = {
        "flow": flow,
        "flow_version": version,
        "step": notification.step,
        "lead_id": lead_id,
        "important": notification.important,
        "idempotency_key": notification.idempotency_key,
        "request": {"method": notification.method, "url": url},
        "input": source.as_event(),
        "queued_at": timestamp(),
    }
    # The snapshot is JSON already (taken when the step ran): spliced in, not parsed again.
    return b'{"context":' + notification.context + b"," + orjson.dumps(header)[1:]


class NotRecord(ValueError):
    """The message on the notifications topic is not a notification record."""


def read_record(raw: bytes | None) -> dict[str, Any]:
    try:
        record = orjson.loads(raw or b"")
    except orjson.JSONDecodeError as exc:
        raise NotRecord(f"not JSON: {exc}") from None
    missing = (
        [key for key in ("step", "lead_id", "context") if key not in record]
        if isinstance(record, dict)
        else []
    )
    if not isinstance(record, dict) or missing or not isinstance(record["context"], dict):
        raise NotRecord(f"not a notification record (missing {', '.join(missing) or 'context'})")
    return record


def render_context(record: dict[str, Any], settings: dict[str, Any], flow: str) -> dict[str, Any]:
    """The template context the step saw when the lead ran, with today's settings."""
    return context_of(record["context"], settings, flow)


def attempts_event(
    record: dict[str, Any], attempt: int, result: str, origin: Source, details: dict[str, Any]
) -> dict[str, Any]:
    """One delivery round, compact: ``details`` = http_status, requests, latency_ms, reason."""
    return {
        "flow": record.get("flow"),
        "step": record.get("step"),
        "lead_id": record.get("lead_id"),
        "attempt": attempt,
        "result": result,
        **details,
        "notification": origin.as_event(),
        "at": timestamp(),
    }
