"""streams/step/single.py: what the test console sees of a step that failed half-way."""

from __future__ import annotations

from helpers import json_handler, make_flow, recording_app
from pytest_aiohttp import AiohttpServer

from streams.http_client import HttpClient
from streams.outcomes import Outcome
from streams.runner import FlowRunner
from streams.step.exchange import Exchange


async def test_a_price_that_cannot_render_still_shows_the_mapped_fields(
    aiohttp_server: AiohttpServer,
) -> None:
    app, _ = recording_app(json_handler({"a": 1}))
    server = await aiohttp_server(app)
    step = {"name": "score", "strict": True, "request": {"url": "/s"},
            "map": {"x": "{{ response.a }}"}, "price": "{{ response.nope.x }}"}  # fmt: skip
    flow = make_flow(str(server.make_url("")), [step])
    client = HttpClient()
    exchanges: dict[str, Exchange] = {}
    try:
        result = await FlowRunner(flow, client).run({"id": "L1"}, "L1", exchanges)
    finally:
        await client.close()
    assert result.outcome is Outcome.ERROR and (result.reason or "").startswith("score: template error")
    assert exchanges["score"].mapped == {"x": 1}
    assert exchanges["score"].response is not None and exchanges["score"].response.status == 200
