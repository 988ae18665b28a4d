"""Run one step for one lead: condition, request, call, parse, outcome, map, store."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from streams.auth import AuthError, send_with_auth
from streams.flow import Step
from streams.headers import header_value
from streams.http_client import ResponseTooLarge
from streams.http_types import HttpResult, OutgoingRequest, RequestBuildError
from streams.outcomes import Outcome, StepResult
from streams.responses import ResponseParseError, parse_response
from streams.templates import TemplateRenderError, truthy
from streams.transport import Transport, current_step
from streams.urls import add_query, join_url

IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass
class Exchange:
    """What a step sent and received, for the test console and debugging."""

    request: OutgoingRequest | None = None
    response: HttpResult | None = None
    parsed: Any = None
    mapped: dict[str, Any] | None = None


def build_request(step: Step, context: dict[str, Any], lead_id: str) -> tuple[OutgoingRequest, float]:
    """The request to send and its timeout (a matching route may change both)."""
    spec = step.request
    integration = step.integration
    url_template, timeout = spec.url, step.effective_timeout
    for route in step.routes:
        if truthy(route.when.render(context)):
            url_template, timeout = route.url, route.timeout or timeout
            break
    if url_template is None:
        raise NoRoute("no route matched and the request has no default url")
    url = join_url(integration.base_url, str(url_template.render(context)))
    url = add_query(url, {name: value.render(context) for name, value in spec.query.items()})
    headers = {IDEMPOTENCY_HEADER: f"{lead_id}:{step.name}"}
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
    step: Step, context: dict[str, Any], client: Transport, lead_id: str, exchange: Exchange | None = None
) -> StepResult:
    """Never raises for partner or template problems: they become the step's outcome.

    ``context`` is shared with other steps (``lead`` and ``vars`` are written);
    the step's own ``response``/``http`` live in a copy, so parallel steps do not mix."""
    exchange = exchange if exchange is not None else Exchange()
    context = dict(context)
    current_step.set(step.name)
    result = StepResult(name=step.name, outcome=Outcome.ERROR)
    started = time.perf_counter()
    timeout = step.effective_timeout
    try:
        if step.when is not None and not truthy(step.when.render(context)):
            result.outcome, result.reason = Outcome.SKIP, "condition (when) is false"
            return result
        request, timeout = build_request(step, context, lead_id)
        exchange.request = request
        result.source = "primary"

        async def send(outgoing: OutgoingRequest) -> HttpResult:
            exchange.request = outgoing
            return await client.send(step.integration, outgoing, timeout)

        response, result.attempts = await send_with_auth(step.integration.auth, request, send)
        exchange.response = response
        result.http_status = response.status
        parsed = exchange.parsed = parse_response(step.response_format, response)
        context["response"] = parsed
        context["http"] = {
            "status": response.status,
            "headers": response.headers,
            "elapsed": response.elapsed,
        }
        result.outcome, result.reason = decide(step, context, response, parsed)
        if result.outcome in (Outcome.SUCCESS, Outcome.FAILURE):
            exchange.mapped = apply_mappings(step, context)
            result.price = render_price(step, context)
            if step.reference is not None:
                reference = step.reference.render(context)
                result.reference = None if reference in (None, "") else str(reference)
    except AuthError as exc:
        result.reason = f"auth failed: {exc}"
        exchange.response = exc.response
    except NoRoute as exc:
        result.outcome, result.reason = Outcome.SKIP, str(exc)
    except TemplateRenderError as exc:
        result.reason = f"template error: {exc}"
    except RequestBuildError as exc:
        result.reason = f"request refused: {exc}"
    except TimeoutError:
        result.reason = f"timeout after {timeout:g}s"
    except ResponseTooLarge as exc:
        result.reason = str(exc)
    except ResponseParseError as exc:
        result.reason = str(exc)
    except aiohttp.ClientError as exc:
        result.reason = f"connection error: {type(exc).__name__}: {exc}"
    finally:
        result.duration_ms = (time.perf_counter() - started) * 1000
    return result


def decide(
    step: Step, context: dict[str, Any], response: HttpResult, parsed: Any
) -> tuple[Outcome, str | None]:
    """First matching outcome rule wins; then a SOAP Fault is an error; otherwise
    2xx is success and anything else an error."""
    for rule in step.outcome_rules:
        if response.status in rule.statuses and truthy(rule.when.render(context)):
            reason = rule.reason.render(context) if rule.reason is not None else None
            return rule.outcome, None if reason in (None, "") else str(reason)
    fault = getattr(parsed, "fault", None)
    if isinstance(fault, str):
        return Outcome.ERROR, f"SOAP Fault: {fault}"
    if response.ok:
        return Outcome.SUCCESS, None
    return Outcome.ERROR, f"HTTP {response.status}{_partner_reason(parsed)}"


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
