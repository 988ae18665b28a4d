"""Where a step's answer comes from: the partner, or when it cannot answer, the step's
fallback chain (another URL, the cache, default values, skip, retry later) — one ``Answer``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from streams.auth import AuthError
from streams.cache import CachedResponse, fresh, request_fingerprint
from streams.flow import Step
from streams.http_types import HttpResult, OutgoingRequest
from streams.outcomes import Outcome
from streams.retry_policy import Action
from streams.step.errors import STEP_ERRORS, failure_of
from streams.step.partner import Call, SendHook, call_partner
from streams.step.request import build_request
from streams.step.services import StepServices

# response: judge ``response`` like the partner's answer; default: ``fields`` are the answer;
# defer: come back through the delayed retry topics; skip; none: nothing could answer;
# broken: the chain itself failed (``failure``: a fallback's template, say).
AnswerKind = Literal["response", "default", "defer", "skip", "none", "broken"]


@dataclass(slots=True)
class Answer:
    call: Call  # the partner's last answer and the retry policy's decision on it
    kind: AnswerKind
    source: str | None = None  # "primary", "fallback_url_N", "cache", "default", "skip"
    response: HttpResult | None = None  # the answer to judge (kind "response")
    fields: dict[str, Any] = field(default_factory=dict)  # default values (kind "default")
    attempts: int = 0  # requests sent, the fallback URLs' included
    note: str | None = None  # a skip's note from the flow (`skip: {note: "partner down"}`)
    failure: tuple[Outcome, str] | None = None  # kind "broken"
    refused: HttpResult | None = None  # kind "broken": a fallback URL's answer to its auth flow
    fingerprint: str = ""  # the request's, for the response cache

    @property
    def why(self) -> str:
        """Why the partner did not answer (when it did not)."""
        return self.call.reason

    @property
    def last_response(self) -> HttpResult | None:
        """The answer judged, or else the partner's last response (an exhausted 503, say)."""
        return self.response if self.response is not None else self.call.response

    def skip_reason(self) -> str:
        """The reason of a skipped step: the author's note, then what made the chain run."""
        return f"{self.note} ({self.why})" if self.note else f"skipped ({self.why})"


async def obtain(
    step: Step,
    request: OutgoingRequest,
    timeout: float,
    context: dict[str, Any],
    services: StepServices,
    key: str,
    on_send: SendHook | None = None,
) -> Answer:
    """The partner's answer, or the fallback chain's. Raises what ``call_partner`` raises."""
    # Before auth touches the request: rotating credentials must not defeat the cache.
    fingerprint = (
        request_fingerprint(step.integration.name, request.method, str(request.url), request.body)
        if step.caches
        else ""  # only the cache uses it
    )
    call = await call_partner(step, request, timeout, services, on_send)
    if call.answered:
        primary = call.response
        return Answer(call, "response", "primary", primary, attempts=call.attempts, fingerprint=fingerprint)
    try:
        answer = await fall_back(step, call, fingerprint, context, services, key)
    except STEP_ERRORS as exc:
        refused = exc.response if isinstance(exc, AuthError) else None
        return Answer(call, "broken", attempts=call.attempts, failure=failure_of(exc), refused=refused)
    if answer.source is not None and services.metrics is not None:
        services.metrics.fallbacks.labels(services.flow, step.name, answer.source).inc()
    return answer


async def fall_back(
    step: Step, call: Call, fingerprint: str, context: dict[str, Any], services: StepServices, key: str
) -> Answer:
    """The first source of the step's ``fallback:`` chain that can answer."""
    attempts = call.attempts
    for position, source in enumerate(step.fallback, start=1):
        if source.kind == "url":
            request, timeout = build_request(step, context, key, source.url)
            other = await call_partner(step, request, timeout, services, use_circuit=False)
            attempts += other.attempts
            if other.answered:
                return Answer(call, "response", f"fallback_url_{position}", other.response, attempts=attempts)
        elif source.kind == "cache":
            entry = await services.cache.get(fingerprint)
            hit = entry is not None and fresh(entry, source.max_age, time.time())
            if services.metrics is not None:
                result = "hit" if hit else "miss"
                services.metrics.cache_lookups.labels(services.flow, step.name, result).inc()
            if hit and entry is not None:
                return Answer(call, "response", "cache", entry.to_result(), attempts=attempts)
        elif source.kind == "default":
            fields = {name: value.render(context) for name, value in source.default.items()}
            return Answer(call, "default", "default", fields=fields, attempts=attempts)
        elif source.kind == "retry_later" and services.can_defer:
            return Answer(call, "defer", attempts=attempts)
        elif source.kind == "skip":
            return Answer(call, "skip", "skip", attempts=attempts, note=source.note)
    # FALLBACK and DEFER both mean "this source cannot answer now" (503, exhausted 5xx,
    # timeouts, an open circuit): with nothing else in the chain, try again later.
    if call.decision.action in (Action.DEFER, Action.FALLBACK) and services.can_defer:
        return Answer(call, "defer", attempts=attempts)
    return Answer(call, "none", attempts=attempts)


async def remember(services: StepServices, step: Step, answer: Answer) -> None:
    """Keep the partner's own 2xx answer for the step's ``cache`` fallback."""
    response = answer.response
    if step.caches and answer.source == "primary" and response is not None and response.ok:
        await services.cache.put(answer.fingerprint, CachedResponse.from_result(response, time.time()))
