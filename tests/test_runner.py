"""FlowRunner against real local aiohttp servers: outcomes, mapping, safety limits, step chaining."""

from __future__ import annotations

import asyncio
import copy
import gzip
import hashlib
from typing import Any

import orjson
import pytest
from aiohttp import web
from helpers import (
    API_KEY,
    REQUESTS,
    Handler,
    Received,
    create_partner_app,
    demo_flow,
    json_handler,
    make_flow,
    recording_app,
    run_once,
    serve,
)
from pytest_aiohttp import AiohttpServer

from streams.outcomes import FlowResult, Outcome

LEAD: dict[str, Any] = {
    "id": "L1",
    "email": "ann@example.com",
    "phone": "(555) 123-4567",
    "source": {"id": "w"},
}
OK = {"ok": True}


async def run_demo(
    aiohttp_server: AiohttpServer, lead: dict[str, Any], api_key: str = API_KEY
) -> tuple[FlowResult, web.Application]:
    app = create_partner_app(API_KEY)
    result = await run_once(demo_flow(await serve(aiohttp_server, app), api_key), lead)
    return result, app


async def run_recorded(
    aiohttp_server: AiohttpServer,
    handler: Handler,
    steps: list[dict[str, Any]],
    lead: dict[str, Any] = LEAD,
    **flow_options: Any,
) -> tuple[FlowResult, list[Received]]:
    app, received = recording_app(handler)
    flow = make_flow(await serve(aiohttp_server, app), steps, **flow_options)
    return await run_once(flow, lead, str(lead.get("id", "L1"))), received


async def test_success_maps_typed_fields(aiohttp_server: AiohttpServer) -> None:
    result, app = await run_demo(aiohttp_server, LEAD)
    assert result.outcome is Outcome.SUCCESS and result.reason is None
    [step] = result.steps
    assert (step.outcome, step.http_status, step.attempts, step.source) == (
        Outcome.SUCCESS,
        200,
        1,
        "primary",
    )
    expected_score = int(hashlib.sha256(b"ann@example.com").hexdigest()[:4], 16) % 60
    assert result.lead["risk_score"] == expected_score and type(result.lead["risk_score"]) is int
    assert result.lead["blacklisted"] is False
    assert app[REQUESTS]["total"] == 1


async def test_failure_rule_gives_reason_and_still_maps(aiohttp_server: AiohttpServer) -> None:
    result, _ = await run_demo(aiohttp_server, {**LEAD, "email": "bob@spam.example"})
    assert result.outcome is Outcome.FAILURE
    assert result.steps[0].reason == "domain spam.example is blacklisted"
    assert result.reason == "check_blacklist: domain spam.example is blacklisted"
    assert result.lead["blacklisted"] is True and result.lead["risk_score"] == 99


async def test_unmatched_4xx_is_an_error_with_the_partner_reason(aiohttp_server: AiohttpServer) -> None:
    result, _ = await run_demo(aiohttp_server, {**LEAD, "email": "not-an-email"})
    assert result.outcome is Outcome.ERROR
    assert result.steps[0].reason == "HTTP 422: invalid email"
    assert result.steps[0].http_status == 422
    assert "risk_score" not in result.lead


async def test_wrong_api_key_is_an_http_401_error(aiohttp_server: AiohttpServer) -> None:
    result, app = await run_demo(aiohttp_server, LEAD, api_key="wrong-key")
    assert result.outcome is Outcome.ERROR
    assert result.steps[0].reason == "HTTP 401: invalid API key"
    assert app[REQUESTS]["unauthorized"] == 1


async def test_false_condition_skips_without_a_request(aiohttp_server: AiohttpServer) -> None:
    lead = {key: value for key, value in LEAD.items() if key != "email"}
    result, app = await run_demo(aiohttp_server, lead)
    assert result.outcome is Outcome.SKIP
    assert result.steps[0].outcome is Outcome.SKIP
    assert result.steps[0].reason == "condition (when) is false"
    assert app[REQUESTS]["total"] == 0


async def test_slow_partner_times_out(aiohttp_server: AiohttpServer) -> None:
    entered, never = asyncio.Event(), asyncio.Event()

    async def stall(request: web.Request) -> web.StreamResponse:
        entered.set()
        await never.wait()
        return web.json_response(OK)

    result, received = await run_recorded(
        aiohttp_server, stall, [{"name": "slow", "timeout": "200ms", "request": {"url": "/s"}}]
    )
    assert entered.is_set() and len(received) == 2  # the policy retries a timeout once
    assert result.outcome is Outcome.ERROR
    assert result.steps[0].reason == "timeout after 0.2s (after 2 attempts)"
    assert result.steps[0].duration_ms < 5000


@pytest.mark.parametrize("chunked", [False, True])
async def test_oversized_response_is_an_error(aiohttp_server: AiohttpServer, chunked: bool) -> None:
    async def big(request: web.Request) -> web.StreamResponse:
        if not chunked:
            return web.json_response({"pad": "x" * 5000})
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(10):
            await response.write(b" " * 1000)
        await response.write(b"{}")
        return response

    steps = [{"name": "big", "request": {"url": "/b"}}]
    result, _ = await run_recorded(aiohttp_server, big, steps, integration={"max_response_bytes": 1000})
    assert result.outcome is Outcome.ERROR
    assert "exceeds the 1000-byte cap" in (result.steps[0].reason or "")


async def test_a_compressed_body_is_capped_after_decompression(aiohttp_server: AiohttpServer) -> None:
    bomb = gzip.compress(b"{" + b" " * 100_000 + b"}")  # ~100 bytes on the wire, 100 kB inflated

    async def gzipped(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        return web.Response(body=bomb, headers=headers)

    steps = [{"name": "big", "request": {"url": "/b"}}]
    result, _ = await run_recorded(aiohttp_server, gzipped, steps, integration={"max_response_bytes": 1000})
    assert result.outcome is Outcome.ERROR
    assert "exceeds the 1000-byte cap" in (result.steps[0].reason or "")


async def test_invalid_json_body_is_an_error(aiohttp_server: AiohttpServer) -> None:
    async def broken(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"{not json", content_type="application/json")

    result, _ = await run_recorded(aiohttp_server, broken, [{"name": "j", "request": {"url": "/j"}}])
    assert result.outcome is Outcome.ERROR
    assert (result.steps[0].reason or "").startswith("response is not valid JSON")


async def test_header_injection_is_refused_before_sending(aiohttp_server: AiohttpServer) -> None:
    steps = [{"name": "h", "request": {"url": "/h", "headers": {"X-Ref": "{{ lead.x }}"}}}]
    lead = {**LEAD, "x": "a\r\nEvil: 1"}
    result, received = await run_recorded(aiohttp_server, json_handler(OK), steps, lead)
    assert result.outcome is Outcome.ERROR
    assert (result.steps[0].reason or "").startswith("request refused: header 'X-Ref'")
    assert received == []


async def test_strict_missing_field_is_a_template_error_without_request(
    aiohttp_server: AiohttpServer,
) -> None:
    steps = [{"name": "s", "strict": True, "request": {"url": "/s", "json": {"e": "{{ lead.nope }}"}}}]
    result, received = await run_recorded(aiohttp_server, json_handler(OK), steps)
    assert result.outcome is Outcome.ERROR
    assert (result.steps[0].reason or "").startswith("template error:")
    assert "nope" in (result.steps[0].reason or "")
    assert received == []


async def test_json_body_values_arrive_typed_with_idempotency_key(aiohttp_server: AiohttpServer) -> None:
    body = {"age": "{{ lead.age }}", "ok": "{{ lead.ok }}", "tags": "{{ lead.tags }}"}
    body |= {"missing": "{{ lead.nope }}", "text": "n={{ lead.age }}"}
    steps = [{"name": "post_it", "request": {"url": "/p", "json": body}}]
    lead = {"id": "L7", "age": 42, "ok": False, "tags": ["a", 1]}
    result, [seen] = await run_recorded(aiohttp_server, json_handler(OK), steps, lead)
    assert result.outcome is Outcome.SUCCESS
    assert seen.method == "POST"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Idempotency-Key"] == "L7:post_it"
    assert orjson.loads(seen.body) == {
        "age": 42,
        "ok": False,
        "tags": ["a", 1],
        "missing": None,
        "text": "n=42",
    }


def two_steps(**first: Any) -> list[dict[str, Any]]:
    rejected = {
        "when": "{{ not response.ok }}",
        "outcome": "failure",
        "reason": "rejected {{ response.why }}",
    }
    return [
        {"name": "one", "request": {"url": "/one"}, "response": {"outcome": [rejected]}, **first},
        {"name": "two", "request": {"url": "/two", "json": {"t": "{{ vars.token }}"}}},
    ]


async def answer_by_path(request: web.Request) -> web.StreamResponse:
    if request.path == "/one":
        return web.json_response({"ok": False, "why": "dupe", "token": "tok-1"})
    return web.json_response(OK)


async def test_failed_step_skips_the_rest(aiohttp_server: AiohttpServer) -> None:
    result, received = await run_recorded(aiohttp_server, answer_by_path, two_steps())
    assert result.outcome is Outcome.FAILURE
    assert result.reason == "one: rejected dupe"
    assert [(s.name, s.outcome, s.reason) for s in result.steps] == [
        ("one", Outcome.FAILURE, "rejected dupe"),
        ("two", Outcome.SKIP, "not run: one ended failure"),
    ]
    assert [r.path for r in received] == ["/one"]


async def test_continue_on_failure_runs_next_step_with_stored_vars(aiohttp_server: AiohttpServer) -> None:
    steps = two_steps(continue_on=["failure"], store={"token": "{{ response.token }}"})
    result, received = await run_recorded(aiohttp_server, answer_by_path, steps)
    assert result.outcome is Outcome.SUCCESS
    assert [s.outcome for s in result.steps] == [Outcome.FAILURE, Outcome.SUCCESS]
    assert [r.path for r in received] == ["/one", "/two"]
    assert orjson.loads(received[1].body) == {"t": "tok-1"}
    assert result.vars == {"token": "tok-1"}


async def test_original_lead_is_not_mutated(aiohttp_server: AiohttpServer) -> None:
    lead = copy.deepcopy(LEAD)
    steps = [{"name": "m", "request": {"url": "/m"}, "map": {"source.score": "{{ 7 }}", "email": "x"}}]
    result, _ = await run_recorded(aiohttp_server, json_handler(OK), steps, lead)
    assert result.lead["source"] == {"id": "w", "score": 7} and result.lead["email"] == "x"
    assert lead == LEAD
