"""Run a whole flow over one lead, with no Kafka involved."""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime
from typing import Any

from streams.execution import Exchange, run_step
from streams.flow import Flow
from streams.http_client import HttpClient
from streams.metrics import Metrics
from streams.outcomes import FlowResult, Outcome, StepResult, flow_outcome


class FlowRunner:
    def __init__(self, flow: Flow, client: HttpClient, metrics: Metrics | None = None) -> None:
        self.flow = flow
        self.client = client
        self.metrics = metrics

    async def run(
        self, lead: dict[str, Any], lead_id: str, exchanges: dict[str, Exchange] | None = None
    ) -> FlowResult:
        """Steps run in order; after a failure or error that the step does not
        ``continue_on``, the remaining steps are skipped."""
        lead = copy.deepcopy(lead)
        context: dict[str, Any] = {
            "lead": lead,
            "settings": self.flow.settings,
            "vars": {},
            "flow": {"name": self.flow.name},
            "now": datetime.now(UTC),
        }
        done: list[tuple[StepResult, frozenset[Outcome]]] = []
        stopped_by: StepResult | None = None
        for step in self.flow.steps:
            if stopped_by is not None:
                skipped = StepResult(
                    step.name, Outcome.SKIP, f"not run: {stopped_by.name} ended {stopped_by.outcome}"
                )
                done.append((skipped, frozenset({Outcome.SKIP})))
                continue
            exchange = Exchange()
            if exchanges is not None:
                exchanges[step.name] = exchange
            started = time.perf_counter()
            result = await run_step(step, context, self.client, lead_id, exchange)
            if self.metrics is not None and result.outcome is not Outcome.SKIP:
                self.metrics.request_duration.labels(
                    self.flow.name, step.name, step.integration.name, result.outcome.value
                ).observe(time.perf_counter() - started)
            if self.metrics is not None:
                self.metrics.step_outcomes.labels(self.flow.name, step.name, result.outcome.value).inc()
            done.append((result, step.continue_on))
            if result.outcome in (Outcome.FAILURE, Outcome.ERROR) and result.outcome not in step.continue_on:
                stopped_by = result
        outcome, reason = flow_outcome(done)
        return FlowResult(outcome, reason, lead, [r for r, _ in done], context["vars"])
