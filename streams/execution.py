"""Run one step for one lead: condition, request, call, parse, outcome, map, store."""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import TYPE_CHECKING, Any

import aiohttp

from streams.auth import AuthError
from streams.cache import CachedResponse, request_fingerprint
from streams.calling import Call, StepServices, call_partner
from streams.fallbacks import Substitute, run_chain
from streams.flow import Step
from streams.headers import header_value, idempotency_key
from streams.http_client import ResponseTooLarge
from streams.http_types import HttpResult, OutgoingRequest, RequestBuildError
from streams.outcomes import Outcome, StepResult
from streams.partner_errors import describe
from streams.responses import ResponseParseError, parse_response, read_response
from streams.step.exchange import Exchange
from streams.templates import TemplateRenderError, Value, truthy
from streams.transport import current_step
from streams.urls import add_query, join_url

if TYPE_CHECKING:
    from streams.batching import BatchReply

IDEMPOTENCY_HEADER = "Idempotency-Key"


def build_request(
    step: Step, context: dict[str, Any], lead_id: str, url: Value | None = None
) -> tuple[OutgoingRequest, float]:
    """The request to send and its timeout (a matching route may change both; ``url``
    replaces the URL for a fallback source)."""
    spec = step.request
    integration = step.integration
    url_template, timeout = spec.url, step.effective_timeout
    for route in () if url is not None else step.routes:
        if truthy(route.when.render(context)):
            url_template, timeout = route.url, route.timeout or timeout
            break
    fallback = url is not None  # a fallback url names its own parameters (e.g. its own key)
    url_template = url if url is not None else url_template
    if url_template is None:
        raise NoRoute("no route matched and the request has no default url")
    url = join_url(integration.base_url, str(url_template.render(context)))
    query = {name: value.render(context) for name, value in spec.query.items()}
    url = add_query(url, query, url_wins=fallback)
    headers = {IDEMPOTENCY_HEADER: idempotency_key(lead_id, step.name)}
    body = spec.body
    if body is not None:
        content_type = getattr(body, "content_type_for", None)
        headers["Content-Type"] = content_type(context) if content_type else body.content_type
        extra = getattr(body, "extra_headers", None)
        for name, value in (extra(context) if extra else {}).items():
            headers[name] = header_value(name, value)
    for name, value in (*integration.headers.items(), *spec.headers.items()):
        headers[name] = header_value(name, value.render(context))
    encoded = body.encode(context) if body is not None else None
    return OutgoingRequest(method=spec.method, url=url, headers=headers, body=encoded), timeout


class NoRoute(Exception):
    pass


async def run_step(
    step: Step,
    context: dict[str, Any],
    services: StepServices,
    lead_id: str,
    exchange: Exchange | None = None,
) -> StepResult:
    """Never raises for partner or template problems: they become the step's outcome.

    ``context`` is shared with other steps (``lead`` and ``vars`` are written);
    the step's own ``response``/``http`` live in a copy, so parallel steps do not mix."""
    exchange = exchange if exchange is not None else Exchange()
    context = dict(context)
    current_step.set(step.name)
    result = StepResult(name=step.name, outcome=Outcome.ERROR)
    started = time.perf_counter()
    try:
        if step.when is not None and not truthy(step.when.render(context)):
            result.outcome, result.reason = Outcome.SKIP, "condition (when) is false"
            return result
        if step.batch is not None and services.batcher is not None:
            take_batch_reply(step, context, await services.batcher.submit(step, context, lead_id), lead_id,
                             result, exchange)  # fmt: skip
            return result
        request, timeout = build_request(step, context, lead_id)
        exchange.request = request
        # Before auth touches it: rotating credentials must not defeat the cache.
        fingerprint = (
            request_fingerprint(step.integration.name, request.method, str(request.url), request.body)
            if step.caches
            else ""  # only the cache uses it
        )

        def record(outgoing: OutgoingRequest) -> None:
            exchange.request = outgoing

        call = await call_partner(step, request, timeout, services, record)
        result.attempts = call.attempts
        if call.response is not None:
            exchange.response, result.http_status = call.response, call.response.status
        if call.answered:
            assert call.response is not None
            result.source = "primary"
            judge(step, context, call.response, result, exchange)
            if step.caches and call.response.ok and result.outcome is Outcome.SUCCESS:
                await services.cache.put(fingerprint, CachedResponse.from_result(call.response, time.time()))
            return result
        await substitute(step, context, services, lead_id, call, fingerprint, result, exchange)
    except STEP_ERRORS as exc:
        result.outcome, result.reason = failure_of(exc)
        if isinstance(exc, AuthError):
            exchange.response = exc.response
    finally:
        result.duration_ms = (time.perf_counter() - started) * 1000
    return result


# What a partner, a template or the network can do to a step; anything else is a bug.
STEP_ERRORS = (
    AuthError, NoRoute, TemplateRenderError, RequestBuildError, ResponseTooLarge, ResponseParseError,
    aiohttp.ClientError,  # AddressRefused, and the like
)  # fmt: skip


def failure_of(exc: Exception) -> tuple[Outcome, str]:
    """The outcome and reason of one of ``STEP_ERRORS``."""
    if isinstance(exc, AuthError):
        return Outcome.ERROR, f"auth failed: {exc}"
    if isinstance(exc, NoRoute):
        return Outcome.SKIP, str(exc)
    if isinstance(exc, TemplateRenderError):
        return Outcome.ERROR, f"template error: {exc}"
    if isinstance(exc, RequestBuildError):
        return Outcome.ERROR, f"request refused: {exc}"
    if isinstance(exc, aiohttp.ClientError):  # AddressRefused: "address refused: 127.0.0.1 is a loopback..."
        return Outcome.ERROR, describe(exc)
    return Outcome.ERROR, str(exc)


def take_batch_reply(
    step: Step,
    context: dict[str, Any],
    reply: BatchReply,
    lead_id: str,
    result: StepResult,
    exchange: Exchange,
) -> None:
    """One lead's share of its window's answer: its own result from a 2xx response
    (``response`` is that result; ``batch`` holds the id and size), the whole answer
    otherwise, or what the fallback chain produced for the batch."""
    exchange.request = reply.request
    result.attempts = reply.attempts
    context["batch"] = {"id": reply.batch_id, "size": reply.size}
    if reply.failure is not None:
        result.outcome, result.reason = reply.failure
        return
    if reply.response is None:
        assert reply.call is not None and reply.substitute is not None
        # Each lead gets its own copy: default values are shared by the whole window.
        own = dataclasses.replace(reply.substitute, fields=copy.deepcopy(reply.substitute.fields))
        take_substitute(step, context, reply.call, own, result, exchange)
        return
    exchange.response, result.http_status, result.source = reply.response, reply.response.status, reply.source
    parsed = reply.parsed
    if isinstance(parsed, dict | list):  # the whole answer is shared by the window: a copy each
        parsed = copy.deepcopy(parsed)
    if reply.results is not None:
        if lead_id not in reply.results:
            result.outcome, result.reason = Outcome.ERROR, "no result in batch response"
            return
        parsed = reply.results[lead_id]
    # (a non-2xx answer may be in another format than the step's: its rules may not fit it)
    foreign = not reply.response.ok and not read_response(step.response_format, reply.response)[1]
    judge_parsed(step, context, reply.response, parsed, result, exchange, foreign)


def judge(
    step: Step, context: dict[str, Any], response: HttpResult, result: StepResult, exchange: Exchange
) -> None:
    """Parse an answer, apply the outcome rules, and on success/failure map, store, price."""
    parsed, in_format = read_response(step.response_format, response)
    judge_parsed(step, context, response, parsed, result, exchange, foreign=not in_format)


def judge_parsed(
    step: Step,
    context: dict[str, Any],
    response: HttpResult,
    parsed: Any,
    result: StepResult,
    exchange: Exchange,
    foreign: bool = False,
) -> None:
    """``foreign``: a non-2xx body not in the step's ``response.format`` (see ``decide``)."""
    exchange.parsed = parsed
    context["response"] = parsed
    context["http"] = {"status": response.status, "headers": response.headers, "elapsed": response.elapsed}
    result.outcome, result.reason = decide(step, context, response, parsed, foreign)
    if result.outcome in (Outcome.SUCCESS, Outcome.FAILURE):
        exchange.mapped = apply_mappings(step, context)
        result.price = render_price(step, context)
        if step.reference is not None:
            reference = step.reference.render(context)
            result.reference = None if reference in (None, "") else str(reference)


async def substitute(
    step: Step,
    context: dict[str, Any],
    services: StepServices,
    lead_id: str,
    call: Call,
    fingerprint: str,
    result: StepResult,
    exchange: Exchange,
) -> None:
    """The partner could not answer: walk the fallback chain."""
    answer = await run_chain(
        step,
        call,
        fingerprint,
        context,
        services,
        lambda source: build_request(step, context, lead_id, source.url),
    )
    result.attempts += answer.attempts
    count_fallback(services, step, answer)
    take_substitute(step, context, call, answer, result, exchange)


def count_fallback(services: StepServices, step: Step, answer: Substitute) -> None:
    if answer.source is not None and services.metrics is not None:
        services.metrics.fallbacks.labels(services.flow, step.name, answer.source).inc()


def take_substitute(
    step: Step,
    context: dict[str, Any],
    call: Call,
    answer: Substitute,
    result: StepResult,
    exchange: Exchange,
) -> None:
    why = call.reason
    if answer.kind == "response":
        assert answer.response is not None
        exchange.response, result.http_status, result.source = (
            answer.response,
            answer.response.status,
            answer.source,
        )
        judge(step, context, answer.response, result, exchange)
    elif answer.kind == "default":
        result.outcome, result.source, result.reason = Outcome.SUCCESS, "default", f"default values ({why})"
        for name, value in answer.fields.items():
            set_dotted(context["lead"], name, value)
        exchange.mapped = answer.fields
    elif answer.kind == "skip":
        result.outcome, result.source, result.reason = Outcome.SKIP, "skip", answer.skip_reason(why)
    elif answer.kind == "defer":
        result.outcome, result.reason = Outcome.ERROR, f"retry later: {why}"
        result.defer_after = call.decision.delay
    else:
        result.outcome, result.reason = Outcome.ERROR, exhausted_reason(step, call)


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
    fault = getattr(parsed, "fault", None)
    if isinstance(fault, str):
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
