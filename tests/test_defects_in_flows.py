"""Issue #16, defects 3, 9 and 11, each with the input quoted in the issue, through whole flows
on real local aiohttp partners: a non-2xx answer in another format than the declared one is
judged by its status, a request body's render error says where the template is, and an open
circuit stops the leads already queued for the partner."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import yaml
from aiohttp import web
from pytest_aiohttp import AiohttpServer
from resilience_helpers import Answer, build_flow, flow_document, harness, only_step, partner, score_step

from examples.support.process import wait_for
from streams.bodies.json_body import JsonBody
from streams.circuit import State
from streams.loader import parse_flow
from streams.outcomes import Outcome
from streams.templates import TemplateRenderError, located

# --- #3: a non-2xx answer in another format keeps its status ------------------------------------

P = {"p": "http://partner.example/"}
SOAP_VALIDATE: dict[str, Any] = {  # examples/flows/soap-validate.yaml's step
    "name": "validate",
    "request": {
        "method": "POST",
        "url": "/soap/LeadService.asmx",
        "soap": {
            "version": "1.1",
            "action": "http://partner.example/ValidateLead",
            "header": {"p:AuthHeader": {"@xmlns:p": P["p"], "p:Username": "u", "p:Password": "pw"}},
            "body": {"p:ValidateLead": {"@xmlns:p": P["p"], "p:Email": "{{ lead.email }}"}},
        },
    },
    "response": {
        "format": "xml",
        "outcome": [
            {
                "when": "{{ response.xpath('//p:IsValid', {'p': 'http://partner.example/'}) != 'true' }}",
                "outcome": "failure",
                "reason": "partner says invalid",
            }
        ],
    },
    "map": {"status": "{{ response.xpath('//p:Status', {'p': 'http://partner.example/'}) }}"},
}
LEAD = {"id": "L1", "email": "ann@example.com"}


async def test_a_soap_flow_given_http_401_in_json_reports_the_status_and_message(
    aiohttp_server: AiohttpServer,
) -> None:
    api = await partner(aiohttp_server, Answer(401, {"error": "bad soap credentials"}))
    async with harness(build_flow(api.url, [SOAP_VALIDATE])) as h:
        step = only_step(await h.run(LEAD))
    assert (step.outcome, step.reason, step.http_status) == (
        Outcome.ERROR,
        "HTTP 401: bad soap credentials",
        401,
    )
    assert step.attempts == 1


@pytest.mark.parametrize(
    ("fmt", "reply", "reason"),
    [
        ("json", Answer(404, body=b"no such lead", content_type="text/plain"), "HTTP 404: no such lead"),
        ("json", Answer(404, body=b"<html><body>Not Found</body></html>", content_type="text/html"),
         "HTTP 404: <html><body>Not Found</body></html>"),
        ("json", Answer(404, body=b"<error>gone</error>", content_type="application/xml"),
         "HTTP 404: <error>gone</error>"),
        ("json", Answer(404, body=b"{not json", content_type="application/json"), "HTTP 404: {not json"),
        ("xml", Answer(404, {"message": "no such lead"}), "HTTP 404: no such lead"),
        ("xml", Answer(404, body=b"Not Found", content_type="text/plain"), "HTTP 404: Not Found"),
        ("auto", Answer(404, body=b"{not json", content_type="application/json"), "HTTP 404: {not json"),
    ],
)  # fmt: skip
async def test_a_404_in_another_format_than_declared_is_judged_by_its_status(
    aiohttp_server: AiohttpServer, fmt: str, reply: Answer, reason: str
) -> None:
    api = await partner(aiohttp_server, reply)
    step_spec = score_step(response={"format": fmt})
    async with harness(build_flow(api.url, [step_spec])) as h:
        step = only_step(await h.run(LEAD))
    assert (step.outcome, step.reason, step.http_status) == (Outcome.ERROR, reason, 404)


async def test_rules_for_the_status_that_do_not_fit_a_foreign_body_are_passed_over(
    aiohttp_server: AiohttpServer,
) -> None:
    """A rule written for the declared format cannot read a body in another: it does not match
    (when) or gives the status's reason (reason); a rule that needs no body still applies."""
    api = await partner(aiohttp_server, Answer(401, {"error": "bad soap credentials"}))
    xpath = "{{ response.xpath('//p:Code', {'p': 'http://partner.example/'}) }}"
    rules = [
        {"status": [401], "when": f"{xpath[:-3]} == 'LOCKED' }}}}", "outcome": "failure", "reason": "locked"},
        {"status": [401], "outcome": "failure", "reason": f"credentials refused: {xpath}"},
    ]
    step_spec = {**SOAP_VALIDATE, "response": {"format": "xml", "outcome": rules}, "map": {}}
    async with harness(build_flow(api.url, [step_spec])) as h:
        step = only_step(await h.run(LEAD))
    assert (step.outcome, step.reason) == (Outcome.FAILURE, "HTTP 401: bad soap credentials")


async def test_a_2xx_answer_in_another_format_is_still_a_parse_error(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server, Answer(200, {"status": "ok"}))
    async with harness(build_flow(api.url, [SOAP_VALIDATE])) as h:
        step = only_step(await h.run(LEAD))
    assert step.outcome is Outcome.ERROR
    assert str(step.reason).startswith("response is not usable XML: not well-formed XML")


async def test_retries_exhausted_on_a_foreign_5xx_say_what_the_partner_said(
    aiohttp_server: AiohttpServer,
) -> None:
    api = await partner(aiohttp_server, Answer(500, {"error": "maintenance"}))
    flow = build_flow(api.url, [SOAP_VALIDATE], integration={"retry": {"attempts": 2}})
    async with harness(flow) as h:
        step = only_step(await h.run(LEAD))
    assert (step.outcome, step.reason) == (Outcome.ERROR, "HTTP 500: maintenance (after 2 attempts)")


# --- #9: render errors in request bodies say where the template is --------------------------------

DOB = "{{ lead.dob | date('MM/DD/YYYY') }}"
SUBMIT: dict[str, Any] = {
    "name": "submit",
    "request": {
        "method": "POST",
        "url": "/leads",
        "json": {"email": "{{ lead.email }}", "lead": {"dob": DOB}},
    },
}


def test_a_body_compiled_where_the_flow_is_located_names_each_template_s_place() -> None:
    """The loader builds bodies inside ``located``; each template gets its own path."""
    with located(lambda path: f"flow.yaml:9: steps.0.request.json{''.join(f'.{part}' for part in path)}"):
        body = JsonBody({**SUBMIT["request"]["json"], "tags": ["x", "{{ 1 / 0 }}"]}, False)
    with pytest.raises(TemplateRenderError) as caught:
        body.encode({"lead": {"email": "a@b.example", "dob": "31/31/2020"}})
    assert str(caught.value).startswith(
        f"flow.yaml:9: steps.0.request.json.lead.dob: {DOB}: ValueError: date:"
    )
    with pytest.raises(TemplateRenderError, match=r"^flow\.yaml:9: steps\.0\.request\.json\.tags\.1: "):
        body.encode({"lead": {"email": "a@b.example", "dob": "2020-01-31"}})
    # Outside ``located`` a value is compiled as before.
    assert str(JsonBody({"d": DOB}, False).value.items["d"].source) == DOB  # type: ignore[attr-defined]


async def test_a_render_error_in_a_json_body_has_the_file_line_and_path_of_map_errors(
    aiohttp_server: AiohttpServer,
) -> None:
    """The issue's ``submit: template error: {{ lead.dob | date(...) }}: ValueError…`` gets the
    ``FILE:LINE: path`` a ``map:`` error has (the line of ``dob:`` in the file)."""
    api = await partner(aiohttp_server)
    text = yaml.safe_dump(flow_document(api.url, [SUBMIT]), sort_keys=False)
    line = next(number for number, row in enumerate(text.splitlines(), 1) if row.strip().startswith("dob:"))
    async with harness(parse_flow(text, "test.yaml", {})) as h:
        result = await h.run({"id": "L1", "email": "a@b.example", "dob": "31/31/2020"})
    assert api.requests == 0  # nothing sent
    assert str(result.reason).startswith(
        f"submit: template error: test.yaml:{line}: steps.0.request.json.lead.dob: {DOB}: ValueError: date:"
    )


# --- #11: an open circuit stops the backlog -----------------------------------------------------

# The integration: every call fails, one attempt each, ten in flight.
BACKLOG_CIRCUIT = {"failure_rate": 0.5, "window": "30s", "min_calls": 20, "open_for": "60s"}
FAILING = Answer(500, {"message": "500"})


async def test_an_open_circuit_stops_the_leads_queued_behind_the_concurrency_slots(
    aiohttp_server: AiohttpServer,
) -> None:
    api = await partner(aiohttp_server, FAILING)
    integration = {"retry": {"attempts": 1}, "concurrency": 10, "circuit": BACKLOG_CIRCUIT}
    flow = build_flow(api.url, [score_step()], integration=integration)
    async with harness(flow) as h:
        results = await h.run_many({"id": f"L{n}", "email": f"l{n}@example.com"} for n in range(500))
        assert h.sample("leadstreams_circuit_transitions_total", integration="api", to="open") == 1
    # The 20th failure opens it; at most the 9 others in flight then still reach the partner.
    assert 20 <= api.requests < 20 + 10, api.requests
    reasons = [only_step(result).reason for result in results]
    assert reasons.count("HTTP 500: 500") == api.requests
    assert reasons.count("circuit open") == 500 - api.requests
    assert all(result.outcome is Outcome.ERROR for result in results)


async def test_queued_leads_take_the_fallback_chain_once_the_circuit_opens(
    aiohttp_server: AiohttpServer,
) -> None:
    api = await partner(aiohttp_server, FAILING)
    integration = {"retry": {"attempts": 1}, "concurrency": 10, "circuit": BACKLOG_CIRCUIT}
    flow = build_flow(api.url, [score_step(fallback=[{"default": {"score": 0}}])], integration=integration)
    async with harness(flow) as h:
        results = await h.run_many({"id": f"L{n}", "email": f"l{n}@example.com"} for n in range(100))
    assert api.requests < 30
    steps = [only_step(result) for result in results]
    assert sum(step.reason == "default values (circuit open)" for step in steps) == 100 - api.requests
    assert all((step.outcome, step.source) == (Outcome.SUCCESS, "default") for step in steps)


async def test_half_open_lets_only_its_probes_through_to_a_queue_of_leads(
    aiohttp_server: AiohttpServer,
) -> None:
    """Admitting at the moment of sending must not let the queue through in half-open."""
    release = asyncio.Event()
    calls: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(request.path)
        if len(calls) > 4:  # the probes hang until the end of the test
            await release.wait()
        return web.json_response({"message": "down"}, status=500)

    app = web.Application()
    app.router.add_get("/score", handler)
    server = await aiohttp_server(app)
    circuit = {**BACKLOG_CIRCUIT, "min_calls": 4, "open_for": "200ms", "half_open_probes": 2}
    integration = {"retry": {"attempts": 1}, "concurrency": 10, "circuit": circuit}
    flow = build_flow(str(server.make_url("")), [score_step()], integration=integration)
    async with harness(flow) as h:
        breaker = h.runner.protections.for_integration(flow.steps[0].integration).circuit
        assert breaker is not None
        await h.run_many({"id": f"L{n}", "email": "a@example.com"} for n in range(4))
        assert breaker.state is State.OPEN
        await wait_for(lambda: breaker.state is State.HALF_OPEN, 5.0, "the circuit to half-open")
        queued = [asyncio.create_task(h.run({"id": f"Q{n}", "email": "a@example.com"})) for n in range(30)]
        await wait_for(lambda: sum(task.done() for task in queued) == 28, 5.0, "28 leads refused")
        assert len(calls) == 4 + 2  # the two probes, nothing else
        refused = [only_step(task.result()).reason for task in queued if task.done()]
        assert refused == ["circuit open"] * 28
        release.set()
        probes = [only_step(result) for result in await asyncio.gather(*queued)]
    assert sum(step.reason == "HTTP 500: down" for step in probes) == 2


async def test_leads_queued_behind_the_rate_limit_are_refused_without_waiting_for_it(
    aiohttp_server: AiohttpServer,
) -> None:
    """Review finding 4: a lead that gets its concurrency slot after the circuit opened is refused
    then, not after its rate-limiter wait (60 leads at 10/s would take 6 s), and books no slot."""
    api = await partner(aiohttp_server, FAILING)
    circuit = {**BACKLOG_CIRCUIT, "min_calls": 4}
    integration = {"retry": {"attempts": 1}, "concurrency": 5, "rate_limit": "10/s", "circuit": circuit}
    flow = build_flow(api.url, [score_step()], integration=integration)
    async with harness(flow) as h:
        protection = h.runner.protections.for_integration(flow.steps[0].integration)
        started = time.monotonic()
        results = await h.run_many({"id": f"L{n}", "email": f"l{n}@example.com"} for n in range(60))
        elapsed = time.monotonic() - started
        limiter_waits = h.sample("leadstreams_rate_limit_wait_seconds_count", integration="api")
        next_slot = protection.limiter.reserve()
    reasons = [only_step(result).reason for result in results]
    # The 4th failure opens it; at most the 4 others holding a slot (already in the limiter) follow.
    assert 4 <= api.requests <= 4 + 4, api.requests
    assert reasons.count("circuit open") == 60 - api.requests
    # Only the leads that were in the limiter when it opened asked it; the rest never booked a slot.
    assert limiter_waits <= 4 + 4, limiter_waits
    assert next_slot < 0.5, next_slot  # (60 booked slots would put the next one 5 s ahead)
    assert elapsed < 3.0, elapsed  # ~1 s of slots at most, against ~6 s when each lead waited
