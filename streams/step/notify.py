"""A ``notify:`` step when the lead runs in a worker: it is not sent, it is queued. The
condition is evaluated and the request rendered (a template error shows on the lead, not
later at delivery), then what the request is rendered from is kept for the notifications
agent (streams.notifications), which renders it again and sends it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from streams.flow import Step
from streams.outcomes import Outcome, StepResult
from streams.step.errors import STEP_ERRORS, failure_of
from streams.step.judge import Verdict, condition_skips, step_result
from streams.step.request import IDEMPOTENCY_HEADER, build_request

QUEUED = "queued"
NOT_QUEUED = "not queued"
SENT = "sent"  # run inline (try, test, run_lead): no worker to queue it for


@dataclass(slots=True)
class QueuedNotification:
    step: str
    important: bool
    idempotency_key: str
    method: str
    url: str  # as rendered: the pipeline masks it before it is written
    context: bytes  # JSON of {lead, vars, steps, now}: what the request is rendered from

    @property
    def size(self) -> int:
        return len(self.context) + len(self.url) + 512  # the record's other fields take less


def queue_notification(
    step: Step, context: dict[str, Any], lead_id: str, max_bytes: int
) -> tuple[StepResult, QueuedNotification | None]:
    """The step's line in the lead's event, and the notification to write with the lead
    (None when the condition is false or the request cannot be rendered)."""
    assert step.notify is not None
    started = time.perf_counter()
    try:
        skipped = condition_skips(step, context)
        if skipped is not None:
            return step_result(step, skipped, started), None
        request, _ = build_request(step, context, lead_id)
        # A snapshot: later steps may still change the lead and vars.
        snapshot = {key: context[key] for key in ("lead", "vars", "steps", "now")}
        queued = QueuedNotification(
            step.name,
            step.notify.important,
            request.headers[IDEMPOTENCY_HEADER],
            request.method,
            str(request.url),
            orjson.dumps(snapshot, default=str),
        )
    except STEP_ERRORS as exc:
        return _not_queued(step, Verdict(*failure_of(exc)), started), None
    if queued.size > max_bytes:  # Kafka would refuse the record: say so on the lead instead
        why = f"notification of {queued.size} bytes is larger than the {max_bytes} bytes allowed"
        return _not_queued(step, Verdict(Outcome.ERROR, why), started), None
    result = step_result(step, Verdict(Outcome.SUCCESS, "queued for delivery"), started)
    result.notification = QUEUED
    return result, queued


def _not_queued(step: Step, verdict: Verdict, started: float) -> StepResult:
    result = step_result(step, verdict, started)
    result.notification = NOT_QUEUED
    return result
