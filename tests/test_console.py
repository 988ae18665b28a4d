"""The test console's report: secrets masked wherever they appear, bodies previewed, filtering."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus
from xml.sax.saxutils import escape

import orjson
import pytest
from aiohttp import web
from helpers import json_handler, make_flow, run_exchanges, serve
from pytest_aiohttp import AiohttpServer

from streams.console import BODY_PREVIEW, run_report
from streams.masking import MASK, Masker
from streams.outcomes import Outcome

# Secrets with characters that URL, form, JSON and XML encodings all change.
SETTINGS = {
    "api_key": "k3y+a/b=c&d",
    "header_secret": "hdr-s3cret",
    "json_secret": 'js"on\\s3cret',
    "form_secret": "form s3cret&x=1",
    "xml_secret": "xml<s3cret>&'\"",
}


def spellings(secret: str) -> set[str]:
    """The secret as it may appear once encoded into a URL, a form, JSON or XML."""
    return {
        secret,
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        quote_plus(secret, safe="/"),
        escape(secret),
        escape(secret, {'"': "&quot;"}),
        escape(secret, {'"': "&quot;", "'": "&apos;"}),
        orjson.dumps(secret).decode()[1:-1],
    }


def strings(value: Any) -> Iterator[str]:
    """Every string in a JSON-like value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def leaks(report: dict[str, Any], secrets: list[str]) -> list[tuple[str, str]]:
    return [
        (secret, text)
        for text in strings(report)
        for secret in secrets
        if any(spelling in text for spelling in spellings(secret))
    ]


async def echo(request: web.Request) -> web.StreamResponse:
    """Echoes what it got (query string and body), as partners' error pages sometimes do."""
    body = (await request.read()).decode()
    return web.json_response(
        {"query": request.query_string, "raw": body, "seen": request.headers.get("X-Secret")}
    )


SECRET_STEPS: list[dict[str, Any]] = [
    {
        "name": "query_and_headers",
        "request": {
            "url": "/q",
            "headers": {
                "X-Secret": "{{ settings.header_secret }}",
                "Authorization": "Token {{ settings.header_secret }}",
            },
        },
        "map": {"echoed_header": "{{ response.seen }}"},
    },
    {"name": "json_body", "request": {"url": "/j", "json": {"password": "{{ settings.json_secret }}"}}},
    {"name": "form_body", "request": {"url": "/f", "form": {"password": "{{ settings.form_secret }}"}}},
    {
        "name": "xml_body",
        "request": {
            "url": "/x",
            "xml": {"Login": {"@p": "{{ settings.xml_secret }}", "P": "{{ settings.xml_secret }}"}},
        },
    },
]


async def secrets_report(aiohttp_server: AiohttpServer, verbose: bool) -> dict[str, Any]:
    base_url = await serve(aiohttp_server, web_app(echo))
    auth = {"type": "api_key", "query": "api_key", "value": "{{ settings.api_key }}"}
    flow = make_flow(base_url, SECRET_STEPS, integration={"auth": auth}, settings=SETTINGS)
    lead = {
        "id": "L1",
        "note": f"customer pasted {SETTINGS['api_key']}",
        "nested": {"k": SETTINGS["json_secret"]},
    }
    result, exchanges = await run_exchanges(flow, lead)
    assert [s.outcome for s in result.steps] == [Outcome.SUCCESS] * 4, result.steps
    return run_report(result, exchanges, Masker(flow.secrets), verbose=verbose)


def web_app(handler: Any) -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


@pytest.mark.parametrize("verbose", [False, True])
async def test_every_setting_is_masked_wherever_it_appears(
    aiohttp_server: AiohttpServer, verbose: bool
) -> None:
    report = await secrets_report(aiohttp_server, verbose)
    assert leaks(report, list(SETTINGS.values())) == []
    steps = {step["name"]: step for step in report["steps"]}
    query = steps["query_and_headers"]
    assert query["request"]["url"].endswith(f"/q?api_key={MASK}")
    assert query["request"]["headers"]["X-Secret"] == MASK
    assert query["request"]["headers"]["Authorization"] == f"Token {MASK}"
    assert query["mapped"] == {"echoed_header": MASK}
    assert report["lead"]["note"] == f"customer pasted {MASK}" and report["lead"]["nested"] == {"k": MASK}
    assert orjson.loads(steps["json_body"]["request"]["body"]) == {"password": MASK}
    assert steps["form_body"]["request"]["body"] == f"password={MASK}"
    assert steps["xml_body"]["request"]["body"].endswith(f'<Login p="{MASK}"><P>{MASK}</P></Login>')
    assert ("parsed" in query) is verbose and ("headers" in query["response"]) is verbose


async def test_authorization_is_masked_even_when_the_token_is_no_setting(
    aiohttp_server: AiohttpServer,
) -> None:
    async def token(request: web.Request) -> web.StreamResponse:
        return web.json_response({"access_token": "live-0auth-t0ken", "expires_in": 3600})

    app = web_app(json_handler({"ok": True}))
    app.router.add_post("/oauth/token", token)
    base_url = await serve(aiohttp_server, app)
    auth = {
        "type": "oauth2",
        "token_url": f"{base_url}/oauth/token",
        "client_id": "cid",
        "client_secret": "csecret",
    }
    flow = make_flow(base_url, [{"name": "call", "request": {"url": "/api"}}], integration={"auth": auth})
    result, exchanges = await run_exchanges(flow, {"id": "L1"})
    report = run_report(result, exchanges, Masker(flow.secrets))
    [step] = report["steps"]
    assert step["outcome"] == "success"
    assert step["request"]["headers"]["Authorization"] == f"Bearer {MASK}"
    assert "live-0auth-t0ken" not in orjson.dumps(report).decode()


@pytest.mark.parametrize(
    ("header", "value", "shown"),
    [
        ("Authorization", "Basic dXNlcjpwYXNz", f"Basic {MASK}"),
        ("authorization", "opaque-token-without-scheme", MASK),
        ("X-API-Key", "some key with spaces", MASK),
        ("Cookie", "session=abc", MASK),
        ("X-Trace", "visible", "visible"),
    ],
)
def test_sensitive_headers_are_masked_keeping_only_a_scheme_word(header: str, value: str, shown: str) -> None:
    from streams.console import masked_headers

    assert masked_headers({header: value}, Masker([])) == {header: shown}


async def long_body_report(aiohttp_server: AiohttpServer, verbose: bool) -> tuple[dict[str, Any], str, str]:
    secret = "s3cret-at-the-preview-edge"
    body = "x" * (BODY_PREVIEW - 5) + secret + "y" * 3000

    async def long_text(request: web.Request) -> web.StreamResponse:
        return web.Response(text=body)

    flow = make_flow(
        await serve(aiohttp_server, web_app(long_text)),
        [{"name": "big", "request": {"url": "/"}}],
        settings={"s": secret},
    )
    result, exchanges = await run_exchanges(flow, {"id": "L1"})
    [step] = run_report(result, exchanges, Masker(flow.secrets), verbose=verbose)["steps"]
    return step, secret, body


async def test_long_bodies_are_cut_unless_verbose_and_a_cut_secret_is_still_masked(
    aiohttp_server: AiohttpServer,
) -> None:
    step, secret, body = await long_body_report(aiohttp_server, verbose=False)
    shown = step["response"]["body"]
    assert shown.endswith(f"… ({len(body)} bytes; --verbose shows all)")
    assert len(shown) < len(body) and shown.startswith("x" * (BODY_PREVIEW - 5) + MASK)
    assert secret[:5] not in shown
    step, _, _ = await long_body_report(aiohttp_server, verbose=True)
    assert step["response"]["body"] == body.replace(secret, MASK)


async def test_mapped_values_and_only_step(aiohttp_server: AiohttpServer) -> None:
    steps = [
        {"name": "first", "request": {"url": "/1"}, "map": {"score": "{{ response.score }}"}},
        {"name": "second", "request": {"url": "/2"}, "map": {"again": "{{ response.score + 1 }}"}},
    ]
    flow = make_flow(await serve(aiohttp_server, web_app(json_handler({"score": 7}))), steps)
    result, exchanges = await run_exchanges(flow, {"id": "L1"})
    full = run_report(result, exchanges, Masker([]))
    assert [(s["name"], s["mapped"]) for s in full["steps"]] == [
        ("first", {"score": 7}),
        ("second", {"again": 8}),
    ]
    only = run_report(result, exchanges, Masker([]), only_step="second")
    assert [s["name"] for s in only["steps"]] == ["second"]
    assert only["lead"] == {"id": "L1", "score": 7, "again": 8}
