"""Run a whole flow over one lead, with no Kafka involved."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from typing import Any

from streams.activity import ActivityLog
from streams.cache import InMemoryCache, ResponseCache
from streams.events import MAX_OUTPUT_BYTES
from streams.flow import Flow, Step
from streams.masking import Masker
from streams.metrics import Metrics
from streams.outcomes import FlowResult, Outcome, StepResult, flow_outcome
from streams.protections import Protections
from streams.step.batch import Batcher, run_batched
from streams.step.exchange import Exchange
from streams.step.notify import QUEUED, SENT, QueuedNotification, queue_notification
from streams.step.services import StepServices
from streams.step.single import run_single
from streams.transport import Transport

ANY_OUTCOME = frozenset(Outcome)  # what a notify step may end in without touching the lead's outcome


class FlowRunner:
    def __init__(
        self,
        flow: Flow,
        client: Transport,
        metrics: Metrics | None = None,
        protections: Protections | None = None,
        cache: ResponseCache | None = None,
        batch_windows: bool = False,
        activity: ActivityLog | None = None,
        queue_notifications: bool = False,
        max_notification_bytes: int = MAX_OUTPUT_BYTES,
    ) -> None:
        """``batch_windows``: `batch:` steps collect leads in real windows (the worker);
        without, each lead is sent as a batch of one at once (test console, saved cases).
        ``activity``: the worker's log of partner failures and lead counts (the pipeline
        counts leads through ``self.activity``); none for the test console.
        ``queue_notifications``: `notify:` steps are queued with the lead's output (the
        worker: ``FlowResult.notifications``); without, they are sent inline and awaited."""
        self.flow = flow
        self.activity = activity.flow(flow.name) if activity is not None else None
        self.client = client
        self.metrics = metrics
        self.protections = protections or Protections(flow, metrics)
        self.services = StepServices(
            client=client,
            protections=self.protections,
            flow=flow.name,
            metrics=metrics,
            cache=cache if cache is not None else InMemoryCache(policy=flow.cache_policy),
            can_defer=flow.delayed_retry is not None,
            activity=self.activity,
        )
        base_context = {"settings": flow.settings, "flow": flow_context(flow)}
        self.batcher = Batcher(self.services, base_context, windowed=batch_windows)
        self.queue_notifications = queue_notifications
        self.masker = Masker(flow.secrets)  # no secret goes into a queued notification
        self.max_notification_bytes = max_notification_bytes

    async def run(
        self,
        lead: dict[str, Any],
        lead_id: str,
        exchanges: dict[str, Exchange] | None = None,
        until_step: str | None = None,
        copy_lead: bool = True,
        group: str = "",
    ) -> FlowResult:
        """Stages run in order (a parallel group's steps at once); after a failure
        or error that its step does not ``continue_on``, the remaining steps are
        skipped. ``until_step`` stops after the named step (test console).
        ``copy_lead=False`` lets the flow write onto ``lead`` (one just decoded).
        ``group``: the batch windows the lead joins (the worker: its input partition)."""
        if copy_lead:
            lead = copy.deepcopy(lead)  # the caller's lead stays as it came in
        context: dict[str, Any] = {
            "lead": lead,
            "settings": self.flow.settings,
            "vars": {},
            "steps": {},  # earlier steps' outcomes, for `when:` on later ones
            "flow": flow_context(self.flow),
            "now": datetime.now(UTC),
        }
        done: list[tuple[StepResult, frozenset[Outcome]]] = []
        queued: list[QueuedNotification] = []
        stopped_by: StepResult | None = None
        for stage in self.flow.stages:
            if stopped_by is None:
                running = stage
            else:  # notify steps still run, their `when:` deciding: an alert hears of the failure
                running = tuple(step for step in stage if step.notify is not None)
            if len(running) == 1:  # most stages are one step: no task for it
                ran = [await self._run_step(running[0], context, lead_id, group, exchanges, queued)]
            elif running:
                ran = await asyncio.gather(
                    *(self._run_step(step, context, lead_id, group, exchanges, queued) for step in running)
                )
            else:
                ran = []
            if running is not stage:  # the stage's other steps were not run
                answers = dict(zip((step.name for step in running), ran, strict=True))
                ran = [answers.get(step.name) or not_run(step, stopped_by) for step in stage]
            for step, result in zip(stage, ran, strict=True):
                done.append((result, ANY_OUTCOME if step.notify else step.continue_on))
                context["steps"][step.name] = step_summary(result)
                stops = result.outcome in (Outcome.FAILURE, Outcome.ERROR) and step.notify is None
                if stops and result.outcome not in step.continue_on and stopped_by is None:
                    stopped_by = result
            if until_step is not None and any(step.name == until_step for step in stage):
                break
        outcome, reason = flow_outcome(done)
        defer_after = stopped_by.defer_after if stopped_by is not None else None
        steps = [r for r, _ in done]
        return FlowResult(outcome, reason, lead, steps, context["vars"], defer_after, queued)

    async def _run_step(
        self,
        step: Step,
        context: dict[str, Any],
        lead_id: str,
        group: str,
        exchanges: dict[str, Exchange] | None,
        queued: list[QueuedNotification],
    ) -> StepResult:
        # The step's own context: its ``response``/``http`` must not mix with a parallel step's.
        own = dict(context)
        if step.notify is not None and self.queue_notifications:
            limit, mask = self.max_notification_bytes, self.masker.json_bytes
            result, notification = queue_notification(step, own, lead_id, limit, mask)
            if notification is not None:
                queued.append(notification)
            self._count(step, result)
            return result
        if step.batch is not None:
            result, exchange = await run_batched(step, own, self.batcher, lead_id, group)
        else:
            result, exchange = await run_single(step, own, self.services, lead_id)
            if step.notify is not None and result.outcome is not Outcome.SKIP:
                result.notification = SENT
        if exchanges is not None:
            exchanges[step.name] = exchange
        self._count(step, result)
        return result

    def _count(self, step: Step, result: StepResult) -> None:
        if self.metrics is None:
            return
        flow = self.flow.name
        # A batch step's time includes its window's wait: batch_request_duration has the request.
        # A queued notification sent nothing: its delivery has its own metrics.
        sent = result.outcome is not Outcome.SKIP and result.notification != QUEUED
        if sent and step.batch is None:
            labels = (flow, step.name, step.integration.name, result.outcome.value)
            self.metrics.request_duration.labels(*labels).observe(result.duration_ms / 1000)
        self.metrics.step_outcomes.labels(flow, step.name, result.outcome.value).inc()


def flow_context(flow: Flow) -> dict[str, str]:
    """What templates see of the flow: ``flow.name``, ``flow.version``."""
    return {"name": flow.name, "version": flow.version}


def not_run(step: Step, stopped_by: StepResult | None) -> StepResult:
    """A step skipped because an earlier one stopped the flow."""
    assert stopped_by is not None
    return StepResult(step.name, Outcome.SKIP, f"not run: {stopped_by.name} ended {stopped_by.outcome}")


def step_summary(result: StepResult) -> dict[str, Any]:
    """What later steps' ``when:`` and templates see of an earlier step (``steps.NAME``)."""
    return {
        "outcome": result.outcome.value,
        "reason": result.reason,
        "http_status": result.http_status,
        "price": result.price,
        "reference": result.reference,
    }
