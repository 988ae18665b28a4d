"""Issue #16.6 through whole flows on a real local server: what the partner receives."""

from __future__ import annotations

from aiohttp import web
from helpers import make_flow, run_once, serve
from pytest_aiohttp import AiohttpServer


def partner() -> tuple[web.Application, list[tuple[str, str]]]:
    """Records (path, raw query) of each request; fails with 500 on demand (``fail=N``)."""
    received: list[tuple[str, str]] = []

    async def answer(request: web.Request) -> web.Response:
        received.append((request.path, request.query_string))
        fail = int(request.query.get("fail", "0"))
        return web.json_response({"ok": not fail}, status=500 if fail else 200)

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    return app, received


async def test_query_replaces_the_same_key_in_the_url(aiohttp_server: AiohttpServer) -> None:
    app, received = partner()
    base = await serve(aiohttp_server, app)
    step = {
        "name": "search",
        "request": {
            "method": "GET",
            "url": "/search?source=web&type=auto",
            "query": {"source": "{{ lead.src }}"},
        },
    }
    await run_once(make_flow(base, [step]), {"id": "L1", "src": 123})
    assert received == [("/search", "type=auto&source=123")]  # was source=web&type=auto&source=123


async def test_a_fallback_url_carries_the_query_once_and_keeps_its_own_keys(
    aiohttp_server: AiohttpServer,
) -> None:
    app, received = partner()
    base = await serve(aiohttp_server, app)
    step = {
        "name": "check",
        "request": {
            "method": "GET",
            "url": "/primary",
            "query": {"fail": 5, "key": "E1-primary", "email": "a@b.c"},
        },
        "retry": {"attempts": 1},
        "fallback": [{"url": f"{base}/secondary?fail=0&key=secondary"}],
    }
    result = await run_once(make_flow(base, [step]), {"id": "L1"})
    assert received == [
        ("/primary", "fail=5&key=E1-primary&email=a@b.c"),
        ("/secondary", "fail=0&key=secondary&email=a@b.c"),  # was ?fail=0&key=secondary&fail=5&key=E…
    ]
    assert result.steps[0].source == "fallback_url_1"
