"""One delivery round of a notification: the request rendered again from its record and
sent under the integration's rate limit, concurrency slots, circuit breaker and inline
retries; then one attempts event, and for an important notification the partner could not
take now, the record again on the next delayed-retry tier."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import orjson

from streams.delayed import RetryState, next_deferral
from streams.events import Source
from streams.flow import Flow, Step
from streams.masking import Masker
from streams.metrics import Metrics
from streams.notifications import (
    NotRecord,
    attempts_event,
    read_record,
    render_context,
    results_topic,
    tier_prefix,
)
from streams.outcomes import Outcome, StepResult
from streams.pipeline import Destination, Output
from streams.step.services import StepServices
from streams.step.single import run_single

log = logging.getLogger(__name__)

DELIVERED, FAILED, RETRYING, GAVE_UP, SKIPPED = "delivered", "failed", "retrying", "gave_up", "skipped"


class NotificationDelivery:
    def __init__(self, flow: Flow, queue: str, services: StepServices, metrics: Metrics | None) -> None:
        """``services``: the lead runner's (the same limiters, slots and circuit breakers)."""
        self.flow = flow
        self.steps = {step.name: step for step in flow.steps if step.notify is not None}
        self.results = results_topic(queue)
        self.tiers = tier_prefix(queue)
        self.metrics = metrics
        self.masker = Masker(flow.secrets)
        # An important notification's transient failure ends in a deferral (a retry tier).
        self.services = {True: dataclasses.replace(services, can_defer=True),
                         False: dataclasses.replace(services, can_defer=False)}  # fmt: skip

    async def deliver(self, raw: bytes | None, source: Source, retry: RetryState | None = None) -> Output:
        """Never raises: an unreadable record or a bug is a ``failed`` attempts event."""
        origin = retry.origin if retry is not None else source
        attempt = (retry.attempt if retry is not None else 0) + 1
        started = time.perf_counter()
        record: dict[str, Any] = {}
        try:
            record = read_record(raw)
            step = self.steps.get(str(record["step"]))
            if step is None:
                raise NotRecord(f"step {record['step']!r} is not a notify step of flow {self.flow.name!r}")
            result = await self._send(step, record)
        except NotRecord as exc:
            log.warning("notification at %s not delivered: %s", origin.as_event(), exc)
            result = StepResult(str(record.get("step", "")), Outcome.ERROR, str(exc))
        except Exception as exc:  # a bug must not stop the agent: the round fails, recorded
            log.exception("delivering the notification at %s failed", origin.as_event())
            result = StepResult(str(record.get("step", "")), Outcome.ERROR, f"internal error: {exc!r}")
        return self._round(record, raw, result, attempt, origin, retry, time.perf_counter() - started)

    async def _send(self, step: Step, record: dict[str, Any]) -> StepResult:
        context = render_context(record, self.flow.settings, self.flow.name)
        services = self.services[self.important(step, record)]
        result, _ = await run_single(step, context, services, str(record["lead_id"]))
        return result

    @staticmethod
    def important(step: Step | None, record: dict[str, Any]) -> bool:
        """Queued as important, and still so in the flow: a flow changed to `notify: true`
        has no retry tiers any more (no agent reads them), so such records get one round."""
        return (
            bool(record.get("important")) and step is not None and bool(step.notify and step.notify.important)
        )

    def _round(
        self,
        record: dict[str, Any],
        raw: bytes | None,
        result: StepResult,
        attempt: int,
        origin: Source,
        retry: RetryState | None,
        took: float,
    ) -> Output:
        verdict = _result_of(result, self.important(self.steps.get(result.name), record))
        again: tuple[Output, ...] = ()
        key = self.masker.text(str(record.get("lead_id", ""))).encode()
        if verdict == RETRYING:
            reason = self.masker.text(result.reason or "")
            policy = self.flow.notification_retry
            deferral = next_deferral(policy, self.tiers, retry, origin, result.defer_after or 0.0, reason)
            if deferral is None:
                verdict = GAVE_UP
                log.warning("notification %s of %s gave up after %d rounds: %s",
                            record.get("step"), record.get("lead_id"), attempt, reason)  # fmt: skip
            else:
                topic, state = deferral
                again = (Output(Destination.NOTIFY, key, raw or b"", RETRYING, topic, state.headers()),)
        details = {"http_status": result.http_status, "requests": result.attempts,
                   "latency_ms": round(took * 1000, 3), "reason": result.reason}  # fmt: skip
        event = attempts_event(record, attempt, verdict, origin, details)
        value = self.masker.json_bytes(orjson.dumps(event, default=str))
        if self.metrics is not None:
            labels = (self.flow.name, str(record.get("step", "")), verdict)
            self.metrics.notifications.labels(*labels).inc()
            self.metrics.notification_duration.labels(*labels).observe(took)
        return Output(Destination.NOTIFY, key, value, verdict, self.results, alongside=again)


def _result_of(result: StepResult, important: bool) -> str:
    """A partner's rejection is final; a transient error is retried only if important."""
    if result.outcome is Outcome.SUCCESS:
        return DELIVERED
    if result.outcome is Outcome.SKIP:
        return SKIPPED
    if important and result.defer_after is not None:
        return RETRYING
    return FAILED
