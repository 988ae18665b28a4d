"""Step and flow outcomes (LeadConduit semantics).

success: the partner accepted; failure: the partner rejected the lead and would
again; error: we could not get a usable answer; skip: not attempted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    SKIP = "skip"
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Outcome.SKIP: 0, Outcome.SUCCESS: 1, Outcome.FAILURE: 2, Outcome.ERROR: 3}


@dataclass
class StepResult:
    name: str
    outcome: Outcome
    reason: str | None = None
    http_status: int | None = None
    attempts: int = 0
    duration_ms: float = 0.0
    source: str | None = None  # who answered: "primary" (fallbacks add more)
    price: float | None = None
    reference: str | None = None
    defer_after: float | None = None  # set when the lead should come back via the retry topic
    notification: str | None = None  # a notify step's: queued, not queued, or sent (inline)

    def as_event(self) -> dict[str, Any]:
        event: dict[str, Any] = {
            "name": self.name,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "http_status": self.http_status,
            "attempts": self.attempts,
            "duration_ms": round(self.duration_ms, 3),
            "source": self.source,
        }
        if self.price is not None:
            event["price"] = self.price
        if self.reference is not None:
            event["reference"] = self.reference
        if self.notification is not None:
            event["notification"] = self.notification
        return event


@dataclass
class FlowResult:
    outcome: Outcome
    reason: str | None
    lead: dict[str, Any]
    steps: list[StepResult] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    defer_after: float | None = None  # the lead is to be retried later, not before this many seconds
    notifications: list[Any] = field(default_factory=list)  # QueuedNotification: written with the lead


def flow_outcome(steps: list[tuple[StepResult, frozenset[Outcome]]]) -> tuple[Outcome, str | None]:
    """The worst outcome of the steps, ignoring outcomes a step lets the flow continue on."""
    worst: StepResult | None = None
    for step, tolerated in steps:
        if step.outcome in tolerated:
            continue
        if worst is None or step.outcome.severity > worst.outcome.severity:
            worst = step
    if worst is None:
        return Outcome.SUCCESS if steps else Outcome.SKIP, None
    reason = None if worst.outcome is Outcome.SUCCESS else f"{worst.name}: {worst.reason}"
    return worst.outcome, reason
