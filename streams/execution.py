"""Run one step for one lead: condition, request, call, parse, outcome, map, store."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from streams.auth import send_with_auth
from streams.flow import Step
from streams.headers import header_value
from streams.http_client import HttpClient, ResponseTooLarge
from streams.http_types import HttpResult, OutgoingRequest, RequestBuildError
from streams.outcomes import Outcome, StepResult
from streams.responses import ResponseParseError, parse_response
from streams.templates import TemplateRenderError, truthy
from streams.urls import add_query, join_url

IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass
class Exchange:
    """What a step sent and received, for the test console and debugging."""

    request: OutgoingRequest | None = None
    response: HttpResult | None = None
    parsed: Any = None
    mapped: dict[str, Any] | None = None


def build_request(step: Step, context: dict[str, Any], lead_id: str) -> OutgoingRequest:
    spec = step.request
    integration = step.integration
    url = join_url(integration.base_url, str(spec.url.render(context)))
    url = add_query(url, {name: value.render(context) for name, value in spec.query.items()})
    headers = {IDEMPOTENCY_HEADER: f"{lead_id}:{step.name}"}
    if spec.body is not None:
        headers["Content-Type"] = spec.body.content_type
    for name, value in (*integration.headers.items(), *spec.headers.items()):
        headers[name] = header_value(name, value.render(context))
    body = spec.body.encode(context) if spec.body is not None else None
    return OutgoingRequest(method=spec.method, url=url, headers=headers, body=body)


async def run_step(
    step: Step, context: dict[str, Any], client: HttpClient, lead_id: str, exchange: Exchange | None = None
) -> StepResult:
    """Never raises for partner or template problems: they become the step's outcome."""
    exchange = exchange if exchange is not None else Exchange()
    result = StepResult(name=step.name, outcome=Outcome.ERROR)
    started = time.perf_counter()
    try:
        if step.when is not None and not truthy(step.when.render(context)):
            result.outcome, result.reason = Outcome.SKIP, "condition (when) is false"
            return result
        request = exchange.request = build_request(step, context, lead_id)
        result.source = "primary"

        async def send(outgoing: OutgoingRequest) -> HttpResult:
            return await client.send(step.integration, outgoing, step.effective_timeout)

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
    except TemplateRenderError as exc:
        result.reason = f"template error: {exc}"
    except RequestBuildError as exc:
        result.reason = f"request refused: {exc}"
    except TimeoutError:
        result.reason = f"timeout after {step.effective_timeout:g}s"
    except ResponseTooLarge as exc:
        result.reason = str(exc)
    except ResponseParseError as exc:
        result.reason = str(exc)
    except aiohttp.ClientError as exc:
        result.reason = f"connection error: {type(exc).__name__}: {exc}"
    finally:
        result.duration_ms = (time.perf_counter() - started) * 1000
        context.pop("response", None)
        context.pop("http", None)
    return result


def decide(
    step: Step, context: dict[str, Any], response: HttpResult, parsed: Any
) -> tuple[Outcome, str | None]:
    """First matching outcome rule wins; otherwise 2xx is success and anything else an error."""
    for rule in step.outcome_rules:
        if truthy(rule.when.render(context)):
            reason = rule.reason.render(context) if rule.reason is not None else None
            return rule.outcome, None if reason in (None, "") else str(reason)
    if response.ok:
        return Outcome.SUCCESS, None
    return Outcome.ERROR, f"HTTP {response.status}{_partner_reason(parsed)}"


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
