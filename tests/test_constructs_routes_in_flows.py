"""Routes and parallel groups end to end on real local
aiohttp servers: which URL and timeout a route picks, and what runs at once and in which order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import yaml
from aiohttp import web
from constructs_helpers import LEAD, OK, by_path, outcomes
from helpers import json_handler, make_flow, recording_app, run_once, run_steps, serve
from pytest_aiohttp import AiohttpServer

from streams.flow import Flow
from streams.loader import parse_flow
from streams.outcomes import Outcome
from streams.problems import FlowFileError

# --- routes -------------------------------------------------------------------------------------

ROUTED_STEP: dict[str, Any] = {
    "name": "route_me",
    "routes": [
        {"when": "{{ lead.tier == 'slow' }}", "url": "/slow", "timeout": "0.2s"},
        {"when": "{{ lead.state in ['CA', 'OR'] }}", "url": "/west/{{ lead.state }}"},
    ],
    "request": {"url": "/central/{{ lead.state }}"},
}


async def test_routes_pick_the_first_matching_url_or_fall_back_to_the_default(
    aiohttp_server: AiohttpServer,
) -> None:
    app, received = recording_app(json_handler(OK))
    flow = make_flow(await serve(aiohttp_server, app), [ROUTED_STEP], integration={"timeout": "10s"})
    west = await run_once(flow, {"id": "a", "state": "CA"})
    central = await run_once(flow, {"id": "b", "state": "TX"})
    assert west.outcome is Outcome.SUCCESS and central.outcome is Outcome.SUCCESS
    assert [r.path for r in received] == ["/west/CA", "/central/TX"]


async def test_matching_route_sets_the_timeout(aiohttp_server: AiohttpServer) -> None:
    entered, never = asyncio.Event(), asyncio.Event()

    async def stall(request: web.Request) -> web.StreamResponse:
        entered.set()
        await never.wait()
        return web.json_response(OK)

    # The slow route matches first although the state would also match the west route.
    lead = {"id": "s", "state": "CA", "tier": "slow"}
    result, received = await run_steps(
        aiohttp_server, stall, [ROUTED_STEP], lead, integration={"timeout": "10s"}
    )
    # The status policy retries a timeout once, on the same route.
    assert entered.is_set() and [r.path for r in received] == ["/slow", "/slow"]
    assert outcomes(result) == [("route_me", Outcome.ERROR, "timeout after 0.2s (after 2 attempts)")]
    assert result.steps[0].duration_ms < 5000


async def test_no_matching_route_and_no_default_url_skips_the_step(aiohttp_server: AiohttpServer) -> None:
    step = {
        "name": "only_routes",
        "routes": [{"when": "{{ lead.state == 'NY' }}", "url": "/east"}],
        "request": {},
    }
    result, received = await run_steps(aiohttp_server, json_handler(OK), [step], LEAD)
    assert outcomes(result) == [
        ("only_routes", Outcome.SKIP, "no route matched and the request has no default url")
    ]
    assert result.outcome is Outcome.SKIP and received == []


async def test_route_path_values_are_encoded_as_one_segment(aiohttp_server: AiohttpServer) -> None:
    raw_paths: list[str] = []

    async def keep_raw_path(request: web.Request) -> web.StreamResponse:
        raw_paths.append(request.raw_path)
        return web.json_response(OK)

    step = {"name": "enc", "routes": [{"when": True, "url": "/r/{{ lead.state }}/end"}], "request": {}}
    lead = {"id": "e", "state": "a/../b?c=d#e f"}
    result, _ = await run_steps(aiohttp_server, keep_raw_path, [step], lead)
    assert result.outcome is Outcome.SUCCESS
    assert raw_paths == ["/r/a%2F..%2Fb%3Fc%3Dd%23e%20f/end"]


def test_a_step_without_url_or_routes_is_refused_with_its_line() -> None:
    text = """\
version: 1
name: no-url
topics: {input: a, enriched: b, errors: c}
steps:
  - name: nowhere
    request:
      method: GET
"""
    with pytest.raises(FlowFileError) as caught:
        parse_flow(text, "no-url.yaml", {})
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.path) == ("no-url.yaml", 6, "steps.0.request")
    assert "needs `url:`" in problem.message


# --- parallel groups ----------------------------------------------------------------------------


def parallel_steps(*, b_continue_on: list[str] | None = None) -> list[dict[str, Any]]:
    """A group of three checks (``b`` fails on ``{"valid": false}``), then an ``after`` step."""

    def check(name: str) -> dict[str, Any]:
        invalid = {"when": "{{ not response.valid }}", "outcome": "failure", "reason": f"{name} invalid"}
        step: dict[str, Any] = {
            "name": name,
            "request": {"url": f"/{name}"},
            "response": {"outcome": [invalid]},
            "map": {f"{name}_valid": "{{ response.valid }}"},
        }
        if name == "b" and b_continue_on:
            step["continue_on"] = b_continue_on
        return step

    return [
        {"name": "group", "parallel": [check("a"), check("b"), check("c")]},
        {"name": "after", "request": {"url": "/after"}},
    ]


def make_group_flow(base_url: str, steps: list[dict[str, Any]]) -> Flow:
    """``make_flow`` adds ``integration`` to each stage; a parallel group needs it on its members."""
    for stage in steps:
        for member in stage.get("parallel", []):
            member.setdefault("integration", "api")
    document = {
        "version": 1,
        "name": "group-flow",
        "topics": {"input": "in", "enriched": "out", "errors": "err"},
        "integrations": {"api": {"base_url": base_url, "timeout": "10s", "allow_loopback": True}},
        "steps": [stage if "parallel" in stage else {"integration": "api", **stage} for stage in steps],
    }
    return parse_flow(yaml.safe_dump(document, sort_keys=False), "group.yaml", {})


async def test_parallel_steps_really_run_at_once_and_report_in_declaration_order(
    aiohttp_server: AiohttpServer,
) -> None:
    barrier = asyncio.Barrier(3)  # sequential steps would leave the first one waiting: 504
    c_answered = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        name = request.path.strip("/")
        if name == "after":
            return web.json_response(OK)
        try:
            await asyncio.wait_for(barrier.wait(), 5)
            if name == "a":  # answer last, so completion order differs from declaration order
                await asyncio.wait_for(c_answered.wait(), 5)
        except TimeoutError:
            return web.json_response({"error": "not concurrent"}, status=504)
        if name == "c":
            c_answered.set()
        return web.json_response({"valid": True})

    app, received = recording_app(handler)
    flow = make_group_flow(await serve(aiohttp_server, app), parallel_steps())
    result = await run_once(flow, LEAD)
    assert outcomes(result) == [
        ("a", Outcome.SUCCESS, None),
        ("b", Outcome.SUCCESS, None),
        ("c", Outcome.SUCCESS, None),
        ("after", Outcome.SUCCESS, None),
    ]
    assert {r.path for r in received[:3]} == {"/a", "/b", "/c"} and received[3].path == "/after"
    assert result.lead["a_valid"] is result.lead["b_valid"] is result.lead["c_valid"] is True


async def test_a_failing_parallel_step_stops_the_next_stage_but_not_its_siblings(
    aiohttp_server: AiohttpServer,
) -> None:
    app, received = recording_app(
        by_path({"a": {"valid": True}, "b": {"valid": False}, "c": {"valid": True}})
    )
    flow = make_group_flow(await serve(aiohttp_server, app), parallel_steps())
    result = await run_once(flow, LEAD)
    assert outcomes(result) == [
        ("a", Outcome.SUCCESS, None),
        ("b", Outcome.FAILURE, "b invalid"),
        ("c", Outcome.SUCCESS, None),
        ("after", Outcome.SKIP, "not run: b ended failure"),
    ]
    assert (result.outcome, result.reason) == (Outcome.FAILURE, "b: b invalid")
    assert (result.lead["a_valid"], result.lead["b_valid"], result.lead["c_valid"]) == (True, False, True)
    assert sorted(r.path for r in received) == ["/a", "/b", "/c"]


async def test_continue_on_inside_a_group_lets_the_flow_go_on(aiohttp_server: AiohttpServer) -> None:
    answers = {"a": {"valid": True}, "b": {"valid": False}, "c": {"valid": True}, "after": OK}
    app, received = recording_app(by_path(answers))
    flow = make_group_flow(await serve(aiohttp_server, app), parallel_steps(b_continue_on=["failure"]))
    result = await run_once(flow, LEAD)
    wanted = [Outcome.SUCCESS, Outcome.FAILURE, Outcome.SUCCESS, Outcome.SUCCESS]
    assert [s.outcome for s in result.steps] == wanted
    assert result.outcome is Outcome.SUCCESS and result.reason is None
    assert received[-1].path == "/after"
