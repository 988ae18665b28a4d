"""The fallback chain: where a step's answer comes from when its partner can't give one."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streams.cache import fresh
from streams.calling import Call, StepServices, call_partner
from streams.flow import Fallback, Step
from streams.http_types import HttpResult, OutgoingRequest
from streams.retry_policy import Action


@dataclass
class Substitute:
    """What the chain produced: an answer to judge like the partner's (``response``),
    default fields, a deferral to the retry topic, a skip, or nothing."""

    kind: str  # "response" | "default" | "defer" | "skip" | "none"
    source: str | None = None
    response: HttpResult | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    note: str | None = None  # a skip's note from the flow (`skip: {note: "partner down"}`)

    def skip_reason(self, why: str) -> str:
        """The reason of a skipped step: the author's note, then what made the chain run."""
        return f"{self.note} ({why})" if self.note else f"skipped ({why})"


async def run_chain(
    step: Step,
    why: Call,
    fingerprint: str,
    context: dict[str, Any],
    services: StepServices,
    request_for_url: Callable[[Fallback], tuple[OutgoingRequest, float]],
) -> Substitute:
    attempts = 0
    for position, source in enumerate(step.fallback, start=1):
        if source.kind == "url":
            request, timeout = request_for_url(source)
            call = await call_partner(step, request, timeout, services, use_circuit=False)
            attempts += call.attempts
            if call.answered:
                return Substitute("response", f"fallback_url_{position}", call.response, attempts=attempts)
        elif source.kind == "cache":
            entry = await services.cache.get(fingerprint)
            hit = entry is not None and fresh(entry, source.max_age, time.time())
            _count_cache(services, step, hit)
            if hit and entry is not None:
                return Substitute("response", "cache", entry.to_result(), attempts=attempts)
        elif source.kind == "default":
            fields = {name: value.render(context) for name, value in source.default.items()}
            return Substitute("default", "default", fields=fields, attempts=attempts)
        elif source.kind == "retry_later" and services.can_defer:
            return Substitute("defer", attempts=attempts)
        elif source.kind == "skip":
            return Substitute("skip", "skip", attempts=attempts, note=source.note)
    # FALLBACK and DEFER both mean "this source cannot answer now" (503, exhausted 5xx,
    # timeouts, an open circuit): with nothing else in the chain, try again later.
    if why.decision.action in (Action.DEFER, Action.FALLBACK) and services.can_defer:
        return Substitute("defer", attempts=attempts)
    return Substitute("none", attempts=attempts)


def _count_cache(services: StepServices, step: Step, hit: bool) -> None:
    if services.metrics is not None:
        services.metrics.cache_lookups.labels(services.flow, step.name, "hit" if hit else "miss").inc()
