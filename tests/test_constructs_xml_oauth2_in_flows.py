"""XML, SOAP and OAuth2 through a whole flow on real local
aiohttp servers: escaped bodies, XPath mapping, SOAP faults, one shared token request."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from aiohttp import web
from constructs_helpers import LEAD, outcomes
from helpers import make_flow, run_once, run_steps, serve
from lxml import etree
from pytest_aiohttp import AiohttpServer

from streams.flow import Flow
from streams.http_client import HttpClient
from streams.outcomes import Outcome
from streams.runner import FlowRunner

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
