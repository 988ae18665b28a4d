"""A ``notify:`` step when the lead runs in a worker: it is not sent, it is queued. The
condition is evaluated and the request rendered (a template error shows on the lead, not
later at delivery), then what the request is rendered from is kept for the notifications
agent (streams.notifications), which renders it again and sends it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
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


# A date or time in `lead`, `vars` or `steps` (a stored `{{ now }}`) keeps its type through
# the record's JSON, so the delivery renders what the lead's run would have.
TYPED = {"__leadstreams_datetime__": datetime.fromisoformat, "__leadstreams_date__": date.fromisoformat}


@dataclass(slots=True)
class QueuedNotification:
    step: str
    important: bool
    idempotency_key: str
    method: str
    url: str  # as rendered: the pipeline masks it before it is written
    context: bytes  # JSON of {lead, vars, steps, now}, masked: what the request is rendered from


def queue_notification(
    step: Step, context: dict[str, Any], lead_id: str, max_bytes: int, mask: Callable[[bytes], bytes]
) -> tuple[StepResult, QueuedNotification | None]:
    """The step's line in the lead's event, and the notification to write with the lead
    (None when the condition is false or the request cannot be rendered). The request is
    rendered from the snapshot as the record will hold it (``mask``: the flow's secrets
    masked), so "queued" means the delivery renders it as well."""
    assert step.notify is not None
    started = time.perf_counter()
    try:
        skipped = condition_skips(step, context)
        if skipped is not None:
            return step_result(step, skipped, started), None
        snapshot = mask(snapshot_of(context))  # later steps may still change the lead and vars
        saved = context_of(orjson.loads(snapshot), context["settings"], context["flow"]["name"])
        request, _ = build_request(step, saved, lead_id)
    except STEP_ERRORS as exc:
        return _not_queued(step, Verdict(*failure_of(exc)), started), None
    key = request.headers[IDEMPOTENCY_HEADER]
    size = len(snapshot) + len(str(request.url)) + len(key) + 3 * len(lead_id.encode()) + 512  # (+ keys)
    if size > max_bytes:  # Kafka would refuse the record: say so on the lead instead
        why = f"notification of {size} bytes is larger than the {max_bytes} bytes allowed"
        return _not_queued(step, Verdict(Outcome.ERROR, why), started), None
    url = str(request.url)
    queued = QueuedNotification(step.name, step.notify.important, key, request.method, url, snapshot)
    result = step_result(step, Verdict(Outcome.SUCCESS, "queued for delivery"), started)
    result.notification = QUEUED
    return result, queued


def snapshot_of(context: dict[str, Any]) -> bytes:
    """What a notify step renders from (settings are not in it: the delivery has its own)."""
    values = {key: context[key] for key in ("lead", "vars", "steps")}
    snapshot = orjson.dumps(values, default=_typed, option=orjson.OPT_PASSTHROUGH_DATETIME)
    now = orjson.dumps(context["now"].isoformat())
    return snapshot[:-1] + b',"now":' + now + b"}"


def context_of(saved: dict[str, Any], settings: dict[str, Any], flow: str) -> dict[str, Any]:
    """The template context of a snapshot, with ``settings``."""
    now = saved.get("now")
    return {
        "lead": _untyped(saved.get("lead") or {}),
        "vars": _untyped(saved.get("vars") or {}),
        "steps": _untyped(saved.get("steps") or {}),
        "settings": settings,
        "flow": {"name": flow},
        "now": datetime.fromisoformat(now) if isinstance(now, str) else datetime.now(UTC),
    }


def _typed(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"__leadstreams_datetime__": value.isoformat()}
    if isinstance(value, date):
        return {"__leadstreams_date__": value.isoformat()}
    return str(value)  # (a time of day, or what a filter made: as text)


def _untyped(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1:
            ((tag, text),) = value.items()
            if tag in TYPED and isinstance(text, str):
                return TYPED[tag](text)
        return {key: _untyped(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_untyped(item) for item in value]
    return value


def _not_queued(step: Step, verdict: Verdict, started: float) -> StepResult:
    result = step_result(step, verdict, started)
    result.notification = NOT_QUEUED
    return result
