"""Flow constructs end to end on real local aiohttp servers: price and
reference, status-scoped outcome rules, the steps/vars context (routes and parallel groups are in
test_constructs_routes_in_flows.py, XML/SOAP and OAuth2 in test_constructs_xml_oauth2_in_flows.py)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from constructs_helpers import LEAD, OK, outcomes
from helpers import Handler, json_handler, run_steps
from pytest_aiohttp import AiohttpServer

from streams.outcomes import Outcome

# --- price and reference ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "price", "reference"),
    [
        ({"price": "12.50", "id": 77}, 12.5, "77"),
        ({"price": 3, "id": "R-1"}, 3.0, "R-1"),
        ({"id": "R-2"}, 1.25, "R-2"),  # missing -> default
        ({"price": "n/a", "id": ""}, 1.25, None),  # not numeric -> default; empty reference -> none
    ],
)
async def test_price_and_reference_reach_the_step_result_and_its_event(
    aiohttp_server: AiohttpServer, answer: dict[str, Any], price: float, reference: str | None
) -> None:
    step = {
        "name": "sell",
        "request": {"url": "/sell"},
        "price": {"value": "{{ response.price }}", "default": 1.25},
        "reference": "{{ response.id }}",
    }
    result, _ = await run_steps(aiohttp_server, json_handler(answer), [step], LEAD)
    [sold] = result.steps
    assert (sold.outcome, sold.price, sold.reference) == (Outcome.SUCCESS, price, reference)
    event = sold.as_event()
    assert event["price"] == price
    assert event.get("reference") == reference and ("reference" in event) is (reference is not None)


async def test_plain_template_price_without_default_is_none_when_missing(
    aiohttp_server: AiohttpServer,
) -> None:
    step = {"name": "sell", "request": {"url": "/sell"}, "price": "{{ response.price }}"}
    result, _ = await run_steps(aiohttp_server, json_handler({"other": 1}), [step], LEAD)
    assert result.steps[0].price is None and "price" not in result.steps[0].as_event()


# --- outcome rules scoped by status -------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule_status", "http_status", "outcome", "reason"),
    [
        (None, 200, Outcome.FAILURE, "duplicate lead"),
        (None, 422, Outcome.ERROR, "HTTP 422: dupe"),  # default rules see only 2xx
        ([409], 409, Outcome.FAILURE, "duplicate lead"),
        ([409], 200, Outcome.SUCCESS, None),
        ([409], 410, Outcome.ERROR, "HTTP 410: dupe"),
        (["4xx"], 418, Outcome.FAILURE, "duplicate lead"),
        (["4xx"], 500, Outcome.ERROR, "HTTP 500: dupe (after 3 attempts)"),  # 5xx: retried, then error
    ],
)
async def test_outcome_rules_apply_to_their_statuses(
    aiohttp_server: AiohttpServer,
    rule_status: list[int | str] | None,
    http_status: int,
    outcome: Outcome,
    reason: str | None,
) -> None:
    rule: dict[str, Any] = {"when": "{{ response.reason == 'dupe' }}", "outcome": "failure"}
    rule["reason"] = "duplicate lead"
    if rule_status is not None:
        rule["status"] = rule_status
    step = {"name": "post", "request": {"url": "/p"}, "response": {"outcome": [rule]}}
    handler = json_handler({"reason": "dupe"}, status=http_status)
    result, _ = await run_steps(aiohttp_server, handler, [step], LEAD)
    assert outcomes(result) == [("post", outcome, reason)]
    assert result.steps[0].http_status == http_status


# --- steps context and vars ---------------------------------------------------------------------


async def test_later_steps_see_earlier_outcomes(aiohttp_server: AiohttpServer) -> None:
    refuse = {"when": True, "outcome": "failure", "reason": "no"}
    steps = [
        {"name": "first", "request": {"url": "/first"}, "response": {"outcome": [refuse]}},
        {"name": "if_ok", "when": "{{ steps.first.outcome == 'success' }}", "request": {"url": "/ok"}},
        {"name": "if_failed", "when": "{{ steps.first.outcome == 'failure' }}", "request": {"url": "/nok"}},
    ]
    steps[0]["continue_on"] = ["failure"]
    result, received = await run_steps(aiohttp_server, json_handler(OK), steps, LEAD)
    assert outcomes(result) == [
        ("first", Outcome.FAILURE, "no"),
        ("if_ok", Outcome.SKIP, "condition (when) is false"),
        ("if_failed", Outcome.SUCCESS, None),
    ]
    assert [r.path for r in received] == ["/first", "/nok"]


def token_chain_handler(status: str) -> Handler:
    """/token gives a token; /leads needs it and answers ``status``; /verify/ID needs it too."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/token":
            return web.json_response({"token": "tok-42"})
        if request.headers.get("Authorization") != "Bearer tok-42":
            return web.json_response({"error": "bad token"}, status=401)
        if request.path == "/leads":
            return web.json_response({"id": 9, "status": status}, status=201)
        return web.json_response({"verified": request.path == "/verify/9"})

    return handler


CHAIN: list[dict[str, Any]] = [
    {
        "name": "token",
        "request": {"method": "POST", "url": "/token"},
        "store": {"token": "{{ response.token }}"},
    },
    {
        "name": "create",
        "request": {
            "method": "POST",
            "url": "/leads",
            "headers": {"Authorization": "Bearer {{ vars.token }}"},
            "json": {"email": "{{ lead.email }}"},
        },
        "store": {"crm_id": "{{ response.id }}", "crm_status": "{{ response.status }}"},
        "map": {"crm_id": "{{ response.id }}"},
    },
    {
        "name": "verify",
        "when": "{{ steps.create.outcome == 'success' and vars.crm_status == 'pending' }}",
        "request": {
            "url": "/verify/{{ vars.crm_id }}",
            "headers": {"Authorization": "Bearer {{ vars.token }}"},
        },
        "map": {"verified": "{{ response.verified }}"},
    },
]


async def test_store_vars_chain_token_call_and_conditional_verify(aiohttp_server: AiohttpServer) -> None:
    result, received = await run_steps(aiohttp_server, token_chain_handler("pending"), CHAIN, LEAD)
    assert [s.outcome for s in result.steps] == [Outcome.SUCCESS] * 3
    assert [r.path for r in received] == ["/token", "/leads", "/verify/9"]
    assert received[2].headers["Authorization"] == "Bearer tok-42"
    assert result.vars == {"token": "tok-42", "crm_id": 9, "crm_status": "pending"}
    assert (result.lead["crm_id"], result.lead["verified"]) == (9, True)


async def test_store_vars_chain_skips_verify_when_not_pending(aiohttp_server: AiohttpServer) -> None:
    result, received = await run_steps(aiohttp_server, token_chain_handler("created"), CHAIN, LEAD)
    assert outcomes(result)[2] == ("verify", Outcome.SKIP, "condition (when) is false")
    assert [r.path for r in received] == ["/token", "/leads"]
    assert result.outcome is Outcome.SUCCESS and "verified" not in result.lead
