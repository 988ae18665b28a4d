"""The last leads that ended in ``error`` or ``failure``, for the web console's "Recent
problems": the events exactly as written to Kafka (masked by the pipeline), in memory.

The hot path only appends bytes to a bounded deque (an outage makes every lead a problem);
the summary a row shows is parsed when the page asks, at most ``keep`` events at a time.
An event larger than ``max_event_bytes`` is kept as its summary fields only (the page says
where the whole event is: its errors-topic message)."""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson

PROBLEM_OUTCOMES = frozenset({"error", "failure"})
KEEP = 100
MAX_EVENT_BYTES = 64 * 1024  # 100 of them: at most ~6.4 MiB


@dataclass(frozen=True)
class Problem:
    id: int
    event: bytes  # the JSON event as written (masked), or its summary when it was too large

    def summary(self) -> dict[str, Any]:
        event = self.parsed()
        source = event.get("input") if isinstance(event.get("input"), dict) else {}
        return {
            "id": self.id,
            "time": event.get("completed_at") or event.get("received_at"),
            "flow": event.get("flow"),
            "step": deciding_step(event),
            "lead_id": event.get("id"),
            "outcome": event.get("outcome"),
            "reason": event.get("reason") or event.get("error"),
            "topic": source.get("topic"),
            "partition": source.get("partition"),
            "offset": source.get("offset"),
        }

    def parsed(self) -> dict[str, Any]:
        try:
            event = orjson.loads(self.event)
        except orjson.JSONDecodeError:  # (the pipeline writes JSON; kept defensively readable)
            return {"raw": self.event.decode("utf-8", errors="replace")}
        return event if isinstance(event, dict) else {"event": event}


def deciding_step(event: dict[str, Any]) -> str | None:
    """The step whose outcome the lead took (the first step that ended as the lead did)."""
    steps = event.get("steps")
    if not isinstance(steps, list):
        return None
    for step in steps:
        if isinstance(step, dict) and step.get("outcome") == event.get("outcome"):
            return str(step.get("name"))
    return None


class RecentProblems:
    def __init__(self, keep: int = KEEP, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self.keep = keep
        self.max_event_bytes = max_event_bytes
        self._problems: deque[Problem] = deque(maxlen=keep)
        self._ids = itertools.count(1)

    def add(self, outcome: str, event: bytes) -> None:
        """Called with every output of the pipeline; keeps those of problem leads."""
        if outcome not in PROBLEM_OUTCOMES:
            return
        if len(event) > self.max_event_bytes:
            event = _shrunk(event, self.max_event_bytes)
        self._problems.append(Problem(next(self._ids), event))

    def newest_first(self) -> list[dict[str, Any]]:
        return [problem.summary() for problem in reversed(self._problems)]

    def event(self, problem_id: int) -> dict[str, Any] | None:
        for problem in self._problems:
            if problem.id == problem_id:
                return problem.parsed()
        return None


def _shrunk(event: bytes, limit: int) -> bytes:
    """A too-large event's summary fields, and a note saying where the whole one is."""
    summary = Problem(0, event).parsed()
    kept = {key: summary.get(key) for key in ("id", "flow", "flow_version", "outcome", "reason", "error",
                                               "input", "received_at", "completed_at")}  # fmt: skip
    steps = summary.get("steps") if isinstance(summary.get("steps"), list) else []
    kept["steps"] = [
        {key: step.get(key) for key in ("name", "outcome", "reason", "http_status")}
        for step in steps
        if isinstance(step, dict)
    ]
    kept["note"] = f"the event had {len(event)} bytes (more than {limit} are not kept here): read it on Kafka"
    return orjson.dumps(kept)
