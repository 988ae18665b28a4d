"""The test console's view of a run: what each step sent and got, secrets masked."""

from __future__ import annotations

from typing import Any

import orjson

from streams.compression import readable
from streams.http_types import HttpResult, OutgoingRequest
from streams.masking import MASK, Masker
from streams.outcomes import FlowResult, StepResult
from streams.step.exchange import Exchange

# Credentials that are not settings (OAuth2 tokens, rotated tokens) still must not show.
SENSITIVE_HEADERS = {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "set-cookie"}
SCHEME_HEADERS = {"authorization", "proxy-authorization"}  # "Bearer ***": only these carry a scheme word
BODY_PREVIEW = 2000


def run_report(
    result: FlowResult,
    exchanges: dict[str, Exchange],
    masker: Masker,
    verbose: bool = False,
    only_step: str | None = None,
) -> dict[str, Any]:
    steps = [
        step_report(step, exchanges.get(step.name), masker, verbose)
        for step in result.steps
        if only_step is None or step.name == only_step
    ]
    return masked(
        {
            "outcome": result.outcome.value,
            "reason": result.reason,
            "lead": result.lead,
            "vars": result.vars,
            "steps": steps,
        },
        masker,
    )


def step_report(step: StepResult, exchange: Exchange | None, masker: Masker, verbose: bool) -> dict[str, Any]:
    report: dict[str, Any] = step.as_event()
    if exchange is None:
        return report
    if exchange.request is not None:
        report["request"] = request_view(exchange.request, masker)
    if exchange.response is not None:
        report["response"] = response_view(exchange.response, masker, verbose)
    if verbose and exchange.parsed is not None:
        report["parsed"] = exchange.parsed
    if exchange.mapped is not None:
        report["mapped"] = exchange.mapped
    return report


def request_view(request: OutgoingRequest, masker: Masker) -> dict[str, Any]:
    """The body as the flow wrote it: a compressed one is shown uncompressed, and says so."""
    body, encoding = readable(request.body or b"", request.headers.get("Content-Encoding"))
    view = {
        "method": request.method,
        "url": masker.text(str(request.url)),
        "headers": masked_headers(request.headers, masker),
        "body": masker.text(body.decode("utf-8", errors="replace")) if request.body else None,
    }
    if encoding is not None and request.body:
        view["sent_compressed"] = f"{encoding}, {len(request.body)} of {len(body)} bytes"
    return view


def response_view(response: HttpResult, masker: Masker, verbose: bool) -> dict[str, Any]:
    body = masker.text(response.body.decode("utf-8", errors="replace"))  # before cutting: no half secrets
    if not verbose and len(body) > BODY_PREVIEW:
        body = body[:BODY_PREVIEW] + f"… ({len(response.body)} bytes; --verbose shows all)"
    view: dict[str, Any] = {
        "status": response.status,
        "elapsed_ms": round(response.elapsed * 1000, 1),
        "body": body,
    }
    if verbose:
        view["headers"] = masked_headers(response.headers, masker)
    return view


def masked_headers(headers: dict[str, str], masker: Masker) -> dict[str, str]:
    shown = {}
    for name, value in headers.items():
        if name.lower() in SENSITIVE_HEADERS:
            scheme, _, rest = value.partition(" ")
            keep = name.lower() in SCHEME_HEADERS and rest and scheme.isalpha() and len(scheme) < 10
            value = f"{scheme} {MASK}" if keep else MASK
        shown[name] = masker.text(value)
    return shown


def masked(report: dict[str, Any], masker: Masker) -> dict[str, Any]:
    """The whole report through JSON, so every string (lead fields, vars…) is masked."""
    return orjson.loads(masker.json_bytes(orjson.dumps(report, default=str)))
