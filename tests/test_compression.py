"""``request.compress``: the body goes compressed with its Content-Encoding; the partner reads
the flow's body; ``try`` shows it uncompressed and says how it was sent."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson
import pytest
from aiohttp import web
from helpers import json_handler, make_flow, recording_app, run_once
from pytest_aiohttp import AiohttpServer

from streams.auth.hmac_signature import HmacSignature
from streams.compression import compress, readable
from streams.console import request_view
from streams.masking import Masker
from streams.outcomes import Outcome
from streams.problems import FlowFileError
from streams.step.request import build_request

LEAD = {"id": "L1", "email": "ann@example.com", "note": "x" * 2000}


def step(encoding: str) -> dict[str, Any]:
    return {
        "name": "deliver",
        "request": {"url": "/leads", "json": {"lead": "{{ lead }}"}, "compress": encoding},
    }


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
async def test_the_partner_gets_the_body_compressed_and_reads_the_flows_json(
    aiohttp_server: AiohttpServer, encoding: str
) -> None:
    app, received = recording_app(json_handler({"ok": True}))
    server = await aiohttp_server(app)
    result = await run_once(make_flow(str(server.make_url("")), [step(encoding)]), LEAD)
    assert result.outcome is Outcome.SUCCESS, result.reason
    (request,) = received
    assert request.headers["Content-Encoding"] == encoding
    assert orjson.loads(request.body) == {"lead": LEAD}  # aiohttp's server undoes the encoding
    assert int(request.headers["Content-Length"]) < len(request.body) / 4


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
def test_the_same_lead_sends_the_same_bytes_and_try_shows_them_readable(encoding: str) -> None:
    flow = make_flow("http://partner.invalid", [step(encoding)])
    context = {"lead": LEAD, "settings": {}, "vars": {}, "steps": {}}
    first, _ = build_request(flow.steps[0], context, "L1")
    again, _ = build_request(flow.steps[0], context, "L1")
    assert first.body == again.body  # (gzip without a timestamp: a replay is byte for byte)
    assert readable(first.body or b"", encoding)[0] == orjson.dumps({"lead": LEAD})
    view = request_view(first, Masker({}))
    assert orjson.loads(view["body"]) == {"lead": LEAD}
    assert view["sent_compressed"] == f"{encoding}, {len(first.body or b'')} of {len(view['body'])} bytes"


def test_compress_without_a_body_is_a_problem() -> None:
    with pytest.raises(FlowFileError, match=r"steps\.0\.request\.compress: compress needs a body"):
        make_flow("http://partner.invalid", [{"name": "s", "request": {"url": "/x", "compress": "gzip"}}])
    with pytest.raises(FlowFileError, match="compress"):
        make_flow(
            "http://partner.invalid", [{"name": "s", "request": {"url": "/x", "json": {}, "compress": "zip"}}]
        )


def test_an_uncompressed_body_is_shown_as_it_is() -> None:
    assert readable(b"plain", None) == (b"plain", None)
    assert readable(b"not gzip", "gzip") == (b"not gzip", None)
    assert readable(compress(b"abc", "gzip"), "GZIP") == (b"abc", "GZIP")


async def test_a_compressed_answer_is_read_and_capped_after_decompression(
    aiohttp_server: AiohttpServer,
) -> None:
    async def gzipped(request: web.Request) -> web.Response:
        body = compress(orjson.dumps({"pad": "y" * 5000}), "gzip")
        return web.Response(
            body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    app, _ = recording_app(gzipped)
    server = await aiohttp_server(app)
    flow = make_flow(str(server.make_url("")), [{"name": "s", "request": {"url": "/x"}}],
                     integration={"max_response_bytes": 4096})  # fmt: skip
    result = await run_once(flow, {"id": "L1"})
    assert result.outcome is Outcome.ERROR and "exceeds the 4096-byte cap" in (result.reason or "")


def test_an_hmac_signs_the_compressed_body_as_sent() -> None:
    flow = make_flow("http://partner.invalid", [step("gzip")])
    context = {"lead": LEAD, "settings": {}, "vars": {}, "steps": {}}
    request, _ = build_request(flow.steps[0], context, "L1")
    signing = HmacSignature(secret="top-secret-key", clock=lambda: 1_700_000_000.0).auth_flow(request)
    signed = next(signing)
    message = b"POST\n/leads\n1700000000\n" + (request.body or b"")
    expected = hmac.new(b"top-secret-key", message, hashlib.sha256).hexdigest()
    assert signed.headers["X-Signature"] == expected and signed.body == request.body
    assert (request.body or b"").startswith(b"\x1f\x8b")  # gzip's magic: the bytes that go out
