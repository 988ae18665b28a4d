"""A step for one lead: condition, request, answer (partner or fallback), judgement."""

from __future__ import annotations

import time
from typing import Any

from streams.auth import AuthError
from streams.flow import Step
from streams.http_types import OutgoingRequest
from streams.outcomes import Outcome, StepResult
from streams.responses import read_response
from streams.step.answer import Answer, obtain, remember
from streams.step.errors import STEP_ERRORS, failure_of
from streams.step.exchange import Exchange
from streams.step.judge import (
    Verdict,
    condition_skips,
    judge_response,
    judge_substitute,
    priced,
    step_result,
)
from streams.step.request import build_request
from streams.step.services import StepServices


async def run_single(
    step: Step, context: dict[str, Any], services: StepServices, lead_id: str
) -> tuple[StepResult, Exchange]:
    """Never raises for partner or template problems: they become the step's outcome.

    ``context`` is the step's own (``response``/``http`` are written there) but shares
    ``lead`` and ``vars`` with the other steps, which mappings and stores write."""
    exchange = Exchange()

    def sent(outgoing: OutgoingRequest) -> None:  # the last request as signed, for the console
        exchange.request = outgoing

    started = time.perf_counter()
    answer: Answer | None = None
    try:
        verdict = condition_skips(step, context)
        if verdict is None:
            request, timeout = build_request(step, context, lead_id)
            exchange.request = request
            answer = await obtain(step, request, timeout, context, services, lead_id, sent)
            exchange.response = answer.refused or answer.last_response
            verdict = await judge_single(step, context, services, answer, exchange)
    except STEP_ERRORS as exc:
        verdict = Verdict(*failure_of(exc))
        if isinstance(exc, AuthError):
            exchange.response = exc.response
    if answer is None:
        return step_result(step, verdict, started), exchange
    # The partner's last status shows even when a substitute answered (an exhausted 503).
    return step_result(step, verdict, started, answer.attempts, answer.last_response, answer.source), exchange


async def judge_single(
    step: Step, context: dict[str, Any], services: StepServices, answer: Answer, exchange: Exchange
) -> Verdict:
    if answer.kind != "response" or answer.response is None:
        verdict = judge_substitute(step, context, answer)
    else:
        parsed, in_format = read_response(step.response_format, answer.response)
        exchange.parsed = parsed
        verdict = judge_response(step, context, answer.response, parsed, foreign=not in_format)
        exchange.mapped = verdict.mapped
        verdict = priced(step, context, verdict)
        if verdict.outcome is Outcome.SUCCESS:
            await remember(services, step, answer)
        return verdict
    exchange.mapped = verdict.mapped
    return verdict
