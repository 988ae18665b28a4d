"""Flow constructs end to end on real local aiohttp servers: routes, parallel groups, price and
reference, status-scoped outcome rules, the steps/vars context, XML/SOAP and OAuth2 in a flow."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
import yaml
from aiohttp import web
from helpers import Handler, json_handler, make_flow, recording_app, run_once, run_steps, serve
from lxml import etree
from pytest_aiohttp import AiohttpServer

from streams.flow import Flow
from streams.http_client import HttpClient
from streams.loader import parse_flow
from streams.outcomes import FlowResult, Outcome
from streams.problems import FlowFileError
from streams.runner import FlowRunner

LEAD: dict[str, Any] = {"id": "L1", "email": "ann@example.com", "state": "CA"}
OK = {"ok": True}


def by_path(answers: dict[str, Any]) -> Handler:
    """JSON answers keyed by the request's first path segment ("/a/x" -> "a")."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(answers[request.path.strip("/").split("/")[0]])

    return handler


def outcomes(result: FlowResult) -> list[tuple[str, Outcome, str | None]]:
    return [(step.name, step.outcome, step.reason) for step in result.steps]


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


# --- XML and SOAP through a flow ----------------------------------------------------------------

NASTY_EMAIL = "a<&>\"'b@x.example"
PARTNER_NS = "http://partner.example/"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"


def parse_xml(body: bytes) -> etree._Element:
    return etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))


def xml_answer(text: str, status: int = 200, content_type: str = "application/xml") -> web.Response:
    return web.Response(text=text, status=status, content_type=content_type)


async def echo_email_as_xml(request: web.Request) -> web.StreamResponse:
    """Answers ``<R><Echo>email it read</Echo><Attr>ref attribute</Attr></R>`` (escaped by lxml)."""
    root = parse_xml(await request.read())
    answer = etree.Element("R")
    etree.SubElement(answer, "Echo").text = root.findtext(".//Email")
    etree.SubElement(answer, "Attr").text = root.get("ref")
    return xml_answer(etree.tostring(answer).decode())


XML_MAP = {"echo": "{{ response.xpath('/R/Echo') }}", "attr": "{{ response.xpath('/R/Attr') }}"}


@pytest.mark.parametrize(
    "xml_body",
    [
        {"Lead": {"@ref": "{{ lead.email }}", "Email": "{{ lead.email }}"}},
        '<Lead ref="{{ lead.email }}"><Email>{{ lead.email }}</Email></Lead>',
    ],
    ids=["structure", "template"],
)
async def test_xml_body_escapes_lead_values_and_xpath_maps_the_answer(
    aiohttp_server: AiohttpServer, xml_body: dict[str, Any] | str
) -> None:
    step = {
        "name": "x",
        "request": {"url": "/x", "xml": xml_body},
        "response": {"format": "xml"},
        "map": XML_MAP,
    }
    lead = {"id": "X1", "email": NASTY_EMAIL}
    result, [seen] = await run_steps(aiohttp_server, echo_email_as_xml, [step], lead)
    assert result.outcome is Outcome.SUCCESS, result.reason
    assert seen.headers["Content-Type"].startswith("application/xml")
    sent = parse_xml(seen.body)  # well-formed, and the value arrived intact
    assert (sent.findtext("Email"), sent.get("ref")) == (NASTY_EMAIL, NASTY_EMAIL)
    assert (result.lead["echo"], result.lead["attr"]) == (NASTY_EMAIL, NASTY_EMAIL)


def soap_envelope(inner: str) -> str:
    return f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body>{inner}</soap:Body></soap:Envelope>'


async def soap_service(request: web.Request) -> web.StreamResponse:
    root = parse_xml(await request.read())
    ns = {"soap": SOAP11, "p": PARTNER_NS}
    if root.findtext("soap:Header/p:Auth/p:User", namespaces=ns) != "soap-user":
        fault = (
            "<soap:Fault><faultcode>soap:Client</faultcode><faultstring>bad login</faultstring></soap:Fault>"
        )
        return xml_answer(soap_envelope(fault), status=500, content_type="text/xml")
    email = root.findtext("soap:Body/p:Check/p:Email", namespaces=ns) or ""
    result = etree.Element(f"{{{PARTNER_NS}}}CheckResult", nsmap={None: PARTNER_NS})
    etree.SubElement(result, f"{{{PARTNER_NS}}}Email").text = email
    etree.SubElement(result, f"{{{PARTNER_NS}}}Score").text = "85"
    return xml_answer(soap_envelope(etree.tostring(result).decode()), content_type="text/xml")


def soap_step(user: str, response: dict[str, Any] | None = None) -> dict[str, Any]:
    xp = "response.xpath('//p:{}', {{'p': '" + PARTNER_NS + "'}})"
    return {
        "name": "soap_check",
        "request": {
            "url": "/soap",
            "soap": {
                "version": "1.1",
                "action": "http://partner.example/Check",
                "namespaces": {"p": PARTNER_NS},
                "header": {"p:Auth": {"p:User": user}},
                "body": {"p:Check": {"p:Email": "{{ lead.email }}"}},
            },
        },
        **({"response": response} if response is not None else {}),
        "map": {
            "score": "{{ " + xp.format("Score") + " | int }}",
            "echo": "{{ " + xp.format("Email") + " }}",
        },
    }


@pytest.mark.parametrize("response", [{"format": "xml"}, None], ids=["format-xml", "auto-text-xml"])
async def test_soap_11_request_and_xpath_mapping(
    aiohttp_server: AiohttpServer, response: dict[str, Any] | None
) -> None:
    lead = {"id": "S1", "email": NASTY_EMAIL}
    result, [seen] = await run_steps(aiohttp_server, soap_service, [soap_step("soap-user", response)], lead)
    assert result.outcome is Outcome.SUCCESS, result.reason
    assert seen.headers["SOAPAction"] == '"http://partner.example/Check"'
    assert seen.headers["Content-Type"].startswith("text/xml")
    assert parse_xml(seen.body).tag == f"{{{SOAP11}}}Envelope"
    assert (result.lead["score"], result.lead["echo"]) == (85, NASTY_EMAIL)


async def test_soap_fault_is_an_error_with_the_fault_string(aiohttp_server: AiohttpServer) -> None:
    result, _ = await run_steps(aiohttp_server, soap_service, [soap_step("intruder")], LEAD)
    assert outcomes(result) == [("soap_check", Outcome.ERROR, "SOAP Fault: bad login")]
    assert result.steps[0].http_status == 500 and "score" not in result.lead


# --- OAuth2 through a flow ----------------------------------------------------------------------


def oauth_app(token_status: int = 200) -> tuple[web.Application, Counter[str], list[str]]:
    """A token endpoint and an API in one app; counts calls and keeps the bearer tokens the API saw."""
    calls: Counter[str] = Counter()
    seen_tokens: list[str] = []

    async def token(request: web.Request) -> web.StreamResponse:
        calls["token"] += 1
        form = await request.post()
        if token_status != 200 or form.get("client_secret") != "s3cret-value":
            return web.json_response({"error": "invalid_client"}, status=token_status)
        return web.json_response({"access_token": f"tok-{calls['token']}", "expires_in": 3600})

    async def api(request: web.Request) -> web.StreamResponse:
        calls["api"] += 1
        seen_tokens.append(request.headers.get("Authorization", ""))
        return web.json_response({"id": request.query["lead"]})

    app = web.Application()
    app.router.add_post("/oauth/token", token)
    app.router.add_get("/api", api)
    return app, calls, seen_tokens


def oauth_flow(base_url: str) -> Flow:
    auth = {
        "type": "oauth2",
        "token_url": f"{base_url}/oauth/token",
        "client_id": "cid",
        "client_secret": "{{ settings.secret }}",
    }
    step = {
        "name": "call",
        "request": {"url": "/api", "query": {"lead": "{{ lead.id }}"}},
        "map": {"got": "{{ response.id }}"},
    }
    return make_flow(base_url, [step], integration={"auth": auth}, settings={"secret": "s3cret-value"})


async def test_concurrent_leads_share_one_token_request(aiohttp_server: AiohttpServer) -> None:
    app, calls, seen_tokens = oauth_app()
    flow = oauth_flow(await serve(aiohttp_server, app))
    client = HttpClient()
    runner = FlowRunner(flow, client)
    try:
        results = await asyncio.gather(*(runner.run({"id": f"L{i}"}, f"L{i}") for i in range(20)))
    finally:
        await client.close()
    assert [r.outcome for r in results] == [Outcome.SUCCESS] * 20
    assert [r.lead["got"] for r in results] == [f"L{i}" for i in range(20)]
    assert calls == Counter({"token": 1, "api": 20})
    assert set(seen_tokens) == {"Bearer tok-1"}


async def test_failing_token_endpoint_is_an_auth_error_without_an_api_call(
    aiohttp_server: AiohttpServer,
) -> None:
    app, calls, _ = oauth_app(token_status=401)
    result = await run_once(oauth_flow(await serve(aiohttp_server, app)), {"id": "L1"})
    [step] = result.steps
    assert step.outcome is Outcome.ERROR and result.outcome is Outcome.ERROR
    assert (step.reason or "").startswith("auth failed:")
    assert "HTTP 401" in (step.reason or "") and "s3cret-value" not in (step.reason or "")
    assert calls == Counter({"token": 1})
