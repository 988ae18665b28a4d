"""What a step's answer means for the lead: the outcome rules, then on success or failure
the mappings onto the lead, stored ``vars``, the price and the reference."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from streams.flow import Step
from streams.http_types import HttpResult
from streams.outcomes import Outcome, StepResult
from streams.responses import ResponseParseError, parse_response, soap_fault
from streams.step.answer import Answer
from streams.step.partner import Call
from streams.templates import TemplateRenderError, truthy


@dataclass(slots=True)
class Verdict:
    outcome: Outcome
    reason: str | None = None
    mapped: dict[str, Any] | None = None  # the fields written onto the lead
    price: float | None = None
    reference: str | None = None
    defer_after: float | None = None  # come back through the delayed retry topics


def condition_skips(step: Step, context: dict[str, Any]) -> Verdict | None:
    """A skip when the step's ``when:`` is false."""
    if step.when is not None and not truthy(step.when.render(context)):
        return Verdict(Outcome.SKIP, "condition (when) is false")
    return None


def judge_response(
    step: Step, context: dict[str, Any], response: HttpResult, parsed: Any, foreign: bool = False
) -> Verdict:
    """``foreign``: a non-2xx body not in the step's ``response.format`` (see ``decide``).
    Writes the step's ``response``/``http`` into ``context``, and on success or failure
    the mappings onto the lead and the stored vars."""
    context["response"] = parsed
    context["http"] = {"status": response.status, "headers": response.headers, "elapsed": response.elapsed}
    outcome, reason = decide(step, context, response, parsed, foreign)
    if outcome not in (Outcome.SUCCESS, Outcome.FAILURE):
        return Verdict(outcome, reason)
    return Verdict(outcome, reason, apply_mappings(step, context))


def priced(step: Step, context: dict[str, Any], verdict: Verdict) -> Verdict:
    """A success or failure with the step's price and reference (after its mappings, which
    they may read, and which the test console shows even when these fail)."""
    if verdict.mapped is None or (step.price is None and step.reference is None):
        return verdict  # (not a success or failure, or nothing to add)
    price = render_price(step, context)
    reference = step.reference.render(context) if step.reference is not None else None
    reference = None if reference in (None, "") else str(reference)
    return Verdict(verdict.outcome, verdict.reason, verdict.mapped, price, reference)


def judge_substitute(step: Step, context: dict[str, Any], answer: Answer) -> Verdict:
    """An answer that is not a response: default values, a skip, a deferral, or nothing."""
    why = answer.why
    if answer.kind == "default":
        for name, value in answer.fields.items():
            set_dotted(context["lead"], name, value)
        return Verdict(Outcome.SUCCESS, f"default values ({why})", mapped=answer.fields)
    if answer.kind == "skip":
        return Verdict(Outcome.SKIP, answer.skip_reason())
    if answer.kind == "defer":
        return Verdict(Outcome.ERROR, f"retry later: {why}", defer_after=answer.call.decision.delay)
    if answer.kind == "broken" and answer.failure is not None:
        return Verdict(*answer.failure)
    return Verdict(Outcome.ERROR, exhausted_reason(step, answer.call))


def step_result(
    step: Step,
    verdict: Verdict,
    started: float,
    attempts: int = 0,
    response: HttpResult | None = None,
    source: str | None = None,
) -> StepResult:
    """The step's line in the lead's event: ``response`` is the answer it shows the status of."""
    return StepResult(
        name=step.name,
        outcome=verdict.outcome,
        reason=verdict.reason,
        http_status=response.status if response is not None else None,
        attempts=attempts,
        duration_ms=(time.perf_counter() - started) * 1000,
        source=source,
        price=verdict.price,
        reference=verdict.reference,
        defer_after=verdict.defer_after,
    )


def decide(
    step: Step, context: dict[str, Any], response: HttpResult, parsed: Any, foreign: bool = False
) -> tuple[Outcome, str | None]:
    """First matching outcome rule wins; then a SOAP Fault is an error; otherwise
    2xx is success and anything else an error (``HTTP 401: bad credentials``).

    A ``foreign`` body (a non-2xx answer in another format than ``response.format``) is
    judged by its status: a rule for that status whose ``when`` cannot be evaluated on it
    (``response.xpath(…)`` on JSON) does not match, and one whose ``reason`` cannot takes
    the status's reason, rather than a template error hiding the status."""
    for rule in step.outcome_rules:
        if response.status not in rule.statuses:
            continue
        try:
            if not truthy(rule.when.render(context)):
                continue
        except TemplateRenderError:
            if foreign:
                continue
            raise
        try:
            reason = rule.reason.render(context) if rule.reason is not None else None
        except TemplateRenderError:
            if not foreign:
                raise
            reason = status_reason(response, parsed)
        return rule.outcome, None if reason in (None, "") else str(reason)
    fault = soap_fault(parsed)
    if fault is not None:
        return Outcome.ERROR, f"SOAP Fault: {fault}"
    if response.ok:
        return Outcome.SUCCESS, None
    return Outcome.ERROR, status_reason(response, parsed)


def status_reason(response: HttpResult, parsed: Any) -> str:
    """``HTTP 422: invalid email``: the status and the partner's own words when it gave some."""
    return f"HTTP {response.status}{_partner_reason(parsed)}"


def exhausted_reason(step: Step, call: Call) -> str:
    """Why nothing answered: the partner's own words when it gave some, and how often we asked."""
    if call.response is None:
        return call.reason if call.attempts <= 1 else f"{call.reason} (after {call.attempts} attempts)"
    try:  # (a non-2xx body in another format is read by its own: see read_response)
        said = status_reason(call.response, parse_response(step.response_format, call.response))
    except ResponseParseError:
        said = f"HTTP {call.response.status}"
    tries = f" (after {call.attempts} attempts)" if call.attempts > 1 else ""
    return f"{said}{tries}"


def render_price(step: Step, context: dict[str, Any]) -> float | None:
    """The step's price as a number; the configured default when it is missing or not numeric."""
    if step.price is None:
        return None
    value = step.price.value.render(context)
    try:
        return float(value) if value not in (None, "") else step.price.default
    except (TypeError, ValueError):
        return step.price.default


def _partner_reason(parsed: Any) -> str:
    """A short reason from an error body: a common message field, or the text's start."""
    if isinstance(parsed, dict):
        for key in ("reason", "message", "error", "detail", "error_description"):
            value = parsed.get(key)
            if isinstance(value, str | int | float) and value != "":
                return f": {value}"
    elif isinstance(parsed, str) and parsed.strip():
        return f": {parsed.strip()[:200]}"
    return ""


def apply_mappings(step: Step, context: dict[str, Any]) -> dict[str, Any]:
    mapped = {name: value.render(context) for name, value in step.map.items()}
    lead = context["lead"]
    for name, value in mapped.items():
        set_dotted(lead, name, value)
    for name, value in step.store.items():
        context["vars"][name] = value.render(context)
    return mapped


def set_dotted(target: dict[str, Any], dotted_name: str, value: Any) -> None:
    """``a.b.c`` writes ``target['a']['b']['c']``, creating objects on the way."""
    *parents, last = dotted_name.split(".")
    for part in parents:
        child = target.get(part)
        if not isinstance(child, dict):
            child = target[part] = {}
        target = child
    target[last] = value
