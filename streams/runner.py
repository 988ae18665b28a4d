"""Run a whole flow over one lead, with no Kafka involved."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from typing import Any

from streams.activity import ActivityLog
from streams.batching import Batcher
from streams.cache import InMemoryCache, ResponseCache
from streams.calling import StepServices
from streams.execution import Exchange, run_step
from streams.flow import Flow, Step
from streams.guards import Guards
from streams.metrics import Metrics
from streams.outcomes import FlowResult, Outcome, StepResult, flow_outcome
from streams.transport import Transport


class FlowRunner:
    def __init__(
        self,
        flow: Flow,
        client: Transport,
        metrics: Metrics | None = None,
        guards: Guards | None = None,
        cache: ResponseCache | None = None,
        batch_windows: bool = False,
        activity: ActivityLog | None = None,
    ) -> None:
        """``batch_windows``: `batch:` steps collect leads in real windows (the worker);
        without, each lead is sent as a batch of one at once (test console, saved cases).
        ``activity``: the worker's log of partner failures and lead counts (the pipeline
        counts leads through ``self.activity``); none for the test console."""
        self.flow = flow
        self.activity = activity.flow(flow.name) if activity is not None else None
        self.client = client
        self.metrics = metrics
        self.guards = guards or Guards(flow, metrics)
        self.services = StepServices(
            client=client,
            guards=self.guards,
            flow=flow.name,
            metrics=metrics,
            cache=cache if cache is not None else InMemoryCache(policy=flow.cache_policy),
            can_defer=flow.delayed_retry is not None,
            activity=self.activity,
        )
        base_context = {"settings": flow.settings, "flow": {"name": flow.name}}
        self.batcher = Batcher(self.services, base_context, windowed=batch_windows)
        self.services.batcher = self.batcher

    async def run(
        self,
        lead: dict[str, Any],
        lead_id: str,
        exchanges: dict[str, Exchange] | None = None,
        until_step: str | None = None,
        copy_lead: bool = True,
    ) -> FlowResult:
        """Stages run in order (a parallel group's steps at once); after a failure
        or error that its step does not ``continue_on``, the remaining steps are
        skipped. ``until_step`` stops after the named step (test console).
        ``copy_lead=False`` lets the flow write onto ``lead`` (one just decoded)."""
        if copy_lead:
            lead = copy.deepcopy(lead)  # the caller's lead stays as it came in
        context: dict[str, Any] = {
            "lead": lead,
            "settings": self.flow.settings,
            "vars": {},
            "steps": {},  # earlier steps' outcomes, for `when:` on later ones
            "flow": {"name": self.flow.name},
            "now": datetime.now(UTC),
        }
        done: list[tuple[StepResult, frozenset[Outcome]]] = []
        stopped_by: StepResult | None = None
        for stage in self.flow.stages:
            if stopped_by is not None:
                reason = f"not run: {stopped_by.name} ended {stopped_by.outcome}"
                done.extend(
                    (StepResult(s.name, Outcome.SKIP, reason), frozenset({Outcome.SKIP})) for s in stage
                )
                continue
            if len(stage) == 1:  # no task and no extra coroutine for a lone step: most stages are one
                step = stage[0]
                exchange = exchange_of(step, exchanges)
                results = [
                    self._counted(step, await run_step(step, context, self.services, lead_id, exchange))
                ]
            else:
                results = await asyncio.gather(
                    *(self._run_step(step, context, lead_id, exchanges) for step in stage)
                )
            for step, result in zip(stage, results, strict=True):
                done.append((result, step.continue_on))
                context["steps"][step.name] = {
                    "outcome": result.outcome.value,
                    "reason": result.reason,
                    "http_status": result.http_status,
                    "price": result.price,
                    "reference": result.reference,
                }
                stops = result.outcome in (Outcome.FAILURE, Outcome.ERROR)
                if stops and result.outcome not in step.continue_on and stopped_by is None:
                    stopped_by = result
            if until_step is not None and any(step.name == until_step for step in stage):
                break
        outcome, reason = flow_outcome(done)
        defer_after = stopped_by.defer_after if stopped_by is not None else None
        return FlowResult(outcome, reason, lead, [r for r, _ in done], context["vars"], defer_after)

    async def _run_step(
        self, step: Step, context: dict[str, Any], lead_id: str, exchanges: dict[str, Exchange] | None
    ) -> StepResult:
        return self._counted(
            step, await run_step(step, context, self.services, lead_id, exchange_of(step, exchanges))
        )

    def _counted(self, step: Step, result: StepResult) -> StepResult:
        """The step's metrics; returns ``result``."""
        if self.metrics is not None:
            flow = self.flow.name
            # A batch step's time includes its window's wait: batch_request_duration has the request.
            if result.outcome is not Outcome.SKIP and step.batch is None:
                self.metrics.request_duration.labels(
                    flow, step.name, step.integration.name, result.outcome.value
                ).observe(result.duration_ms / 1000)
            self.metrics.step_outcomes.labels(flow, step.name, result.outcome.value).inc()
        return result


def exchange_of(step: Step, exchanges: dict[str, Exchange] | None) -> Exchange:
    """A new exchange for the step, kept in ``exchanges`` when the caller wants to see it."""
    exchange = Exchange()
    if exchanges is not None:
        exchanges[step.name] = exchange
    return exchange
