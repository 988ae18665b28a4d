"""LeadPipeline: one message in, one schema-valid event out, on the right topic, with secrets masked."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from aiohttp import web
from helpers import API_KEY, REQUESTS, create_partner_app, demo_flow, make_flow, recording_app, serve
from jsonschema import Draft202012Validator
from pytest_aiohttp import AiohttpServer
from resilience_helpers import closed_port_url
from yarl import URL

import schemas
from streams.events import Source
from streams.flow import Flow
from streams.http_client import HttpClient
from streams.pipeline import Destination, LeadPipeline, Output
from streams.runner import FlowRunner

SOURCE = Source("leads.incoming", 3, 1234)
EVENT_SCHEMA = Draft202012Validator(schemas.load("event"))


@asynccontextmanager
async def pipeline_for(flow: Flow) -> AsyncIterator[LeadPipeline]:
    client = HttpClient()
    try:
        yield LeadPipeline(FlowRunner(flow, client))
    finally:
        await client.close()


@pytest.fixture
async def partner(aiohttp_server: AiohttpServer) -> AsyncIterator[tuple[LeadPipeline, web.Application]]:
    app = create_partner_app(API_KEY)
    async with pipeline_for(demo_flow(await serve(aiohttp_server, app))) as pipeline:
        yield pipeline, app


def event_of(output: Output) -> dict[str, Any]:
    event = orjson.loads(output.value)
    EVENT_SCHEMA.validate(event)
    assert output.key == event["id"].encode()
    assert output.outcome == event["outcome"]
    assert event["input"] == {"topic": "leads.incoming", "partition": 3, "offset": 1234}
    return event


async def test_valid_lead_is_enriched(partner: tuple[LeadPipeline, web.Application]) -> None:
    pipeline, _ = partner
    lead = {"id": 17, "email": "ann@example.com", "phone": "555 123 4567"}
    output = await pipeline.process(orjson.dumps(lead), SOURCE)
    assert output.destination is Destination.ENRICHED
    event = event_of(output)
    assert (event["id"], event["flow"], event["outcome"], event["reason"]) == (
        "17",
        "lead-validation",
        "success",
        None,
    )
    assert "error" not in event
    assert event["lead"]["email"] == "ann@example.com" and event["lead"]["blacklisted"] is False
    assert [(s["name"], s["outcome"], s["http_status"]) for s in event["steps"]] == [
        ("check_blacklist", "success", 200)
    ]


async def test_rejected_lead_is_enriched_with_failure(partner: tuple[LeadPipeline, web.Application]) -> None:
    pipeline, _ = partner
    output = await pipeline.process(b'{"id": "a", "email": "x@fraud.example"}', SOURCE)
    assert output.destination is Destination.ENRICHED
    assert event_of(output)["outcome"] == "failure"


async def test_flow_error_goes_to_errors_with_error_field(
    partner: tuple[LeadPipeline, web.Application],
) -> None:
    pipeline, _ = partner
    output = await pipeline.process(b'{"id": "e1", "email": "no-at-sign"}', SOURCE)
    assert output.destination is Destination.ERRORS
    event = event_of(output)
    assert event["outcome"] == "error"
    assert event["error"] == event["reason"] == "check_blacklist: HTTP 422: invalid email"
    assert "raw" not in event and event["lead"]["id"] == "e1"


async def test_a_partner_refusing_connections_is_named_in_the_event() -> None:
    """The reason says who refused, in words: not aiohttp's "Cannot connect to host
    127.0.0.1:PORT ssl:default [Connect call failed ...]" on an http URL."""
    url = URL(closed_port_url())
    flow = make_flow(
        str(url), [{"name": "call", "request": {"url": "/x"}}], integration={"retry": {"attempts": 1}}
    )
    async with pipeline_for(flow) as pipeline:
        output = await pipeline.process(b'{"id": "r1"}', SOURCE)
    assert output.destination is Destination.ERRORS
    event = event_of(output)
    refused = f"connection refused by 127.0.0.1:{url.port}"
    assert event["error"] == event["reason"] == f"call: {refused}"
    assert [step["reason"] for step in event["steps"]] == [refused]


BAD_INPUTS: dict[str, bytes | None] = {
    "invalid json": b"{not json",
    "array": b"[1, 2]",
    "string": b'"just text"',
    "null": b"null",
    "non-utf8": b'{"email": "\xff\xfe"}',
    "oversized": b'{"pad": "' + b"x" * (1024 * 1024) + b'"}',
    "depth 40": b'{"a": ' * 40 + b"1" + b"}" * 40,
    "depth 33": b'{"a": ' * 33 + b"1" + b"}" * 33,
    "object id": b'{"id": {"nested": 1}, "email": "ann@example.com"}',
    "bool id": b'{"id": true}',
    "no value": None,
}


@pytest.mark.parametrize("raw", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
async def test_bad_input_goes_to_errors_with_raw(
    partner: tuple[LeadPipeline, web.Application], raw: bytes | None
) -> None:
    pipeline, app = partner
    output = await pipeline.process(raw, SOURCE)
    assert output.destination is Destination.ERRORS
    event = event_of(output)
    if "output_bytes" in event:  # the whole message base64-encoded would be more than Kafka takes
        assert len(output.value) <= pipeline.max_output_bytes and event["raw_bytes"] == len(raw or b"")
        assert (raw or b"").startswith(base64.b64decode(event["raw"]))
    else:
        assert base64.b64decode(event["raw"]) == (raw or b"")
    assert event["outcome"] == "error" and event["error"] == event["reason"]
    assert event["lead"] is None and event["steps"] == []
    assert app[REQUESTS]["total"] == 0


async def test_depth_at_the_limit_is_accepted(partner: tuple[LeadPipeline, web.Application]) -> None:
    pipeline, _ = partner
    raw = b'{"email": "ann@example.com", "a": ' + b'{"a": ' * 31 + b"1" + b"}" * 32  # 32 levels
    assert (await pipeline.process(raw, SOURCE)).destination is Destination.ENRICHED


@pytest.mark.parametrize("raw", [b'{"email": "ann@example.com"}', b"{broken"])
async def test_derived_id_is_deterministic_per_source(
    partner: tuple[LeadPipeline, web.Application], raw: bytes
) -> None:
    pipeline, _ = partner
    first = event_of(await pipeline.process(raw, SOURCE))["id"]
    again = event_of(await pipeline.process(raw, SOURCE))["id"]
    other = orjson.loads((await pipeline.process(raw, Source(SOURCE.topic, 3, 1235))).value)["id"]
    assert first == again != other
    assert uuid.UUID(first) and uuid.UUID(other)


SECRET = 'Sup3r"secret\\key'


async def echo_key(request: web.Request) -> web.StreamResponse:
    key = request.headers.get("X-API-Key", "")
    if request.path == "/deny":
        return web.json_response({"error": f"key {key} is revoked"}, status=401)
    return web.json_response({"echo": key, "note": f"you sent {key}"})


@pytest.mark.parametrize(
    ("path", "rule", "destination", "reason"),
    [
        ("/ok", None, Destination.ENRICHED, None),
        (
            "/ok",
            {"outcome": "failure", "reason": "{{ response.note }}"},
            Destination.ENRICHED,
            "you sent ***",
        ),
        ("/deny", None, Destination.ERRORS, "HTTP 401: key *** is revoked"),
    ],
)
async def test_secrets_never_leave_in_output(
    aiohttp_server: AiohttpServer,
    path: str,
    rule: dict[str, str] | None,
    destination: Destination,
    reason: str | None,
) -> None:
    app, received = recording_app(echo_key)
    step: dict[str, Any] = {
        "name": "echo",
        "request": {"url": path},
        "map": {"echoed": "{{ response.echo }}"},
    }
    if rule:
        step["response"] = {"outcome": [rule]}
    auth = {"type": "api_key", "value": "{{ settings.key }}"}
    flow = make_flow(
        await serve(aiohttp_server, app), [step], integration={"auth": auth}, settings={"key": SECRET}
    )
    async with pipeline_for(flow) as pipeline:
        output = await pipeline.process(orjson.dumps({"id": "s1", "note": SECRET}), SOURCE)
    assert received[0].headers["X-API-Key"] == SECRET  # the partner really did get (and echo) it
    assert output.destination is destination
    escaped = orjson.dumps(SECRET)[1:-1]
    assert escaped not in output.value and SECRET.encode() not in output.value
    event = event_of(output)
    assert event["steps"][0]["reason"] == reason
    if destination is Destination.ENRICHED:
        assert event["lead"]["echoed"] == "***"


@pytest.mark.parametrize(
    "raw",
    [b"not json " + SECRET.encode(), b'{"id": "s2", "note": "' + orjson.dumps(SECRET)[1:-1] + b'"', b"["],
    ids=["as text", "json-escaped", "without"],
)
async def test_raw_bytes_of_an_unusable_input_are_masked(aiohttp_server: AiohttpServer, raw: bytes) -> None:
    """The base64 ``raw`` of a bad input hides settings too (json_bytes cannot see into it)."""
    app, _ = recording_app(echo_key)
    flow = make_flow(await serve(aiohttp_server, app), [{"name": "echo", "request": {"url": "/ok"}}],
                     settings={"key": SECRET})  # fmt: skip
    async with pipeline_for(flow) as pipeline:
        output = await pipeline.process(raw, SOURCE)
    event = event_of(output)
    assert output.destination is Destination.ERRORS and event["lead"] is None
    shown = base64.b64decode(event["raw"])
    assert SECRET.encode() not in shown and orjson.dumps(SECRET)[1:-1] not in shown
    masked = raw.replace(orjson.dumps(SECRET)[1:-1], b"***").replace(SECRET.encode(), b"***")
    assert shown == masked  # everything else is the input as received


async def test_an_output_kafka_would_refuse_goes_to_errors_short_with_its_steps(
    partner: tuple[LeadPipeline, web.Application],
) -> None:
    pipeline, _ = partner
    pipeline.max_output_bytes = 20_000
    raw = orjson.dumps({"id": "big", "email": "ann@example.com", "notes": "n" * 30_000})
    output = await pipeline.process(raw, SOURCE)
    assert output.destination is Destination.ERRORS
    assert len(output.value) <= 20_000
    event = event_of(output)
    assert event["outcome"] == "error" and event["lead"] is None
    assert event["reason"].startswith(f"output of {event['output_bytes']} bytes exceeds the 20000-byte limit")
    assert event["reason"].endswith("the lead's outcome was success")
    assert [(s["name"], s["http_status"]) for s in event["steps"]] == [("check_blacklist", 200)]
    assert event["raw_bytes"] == len(raw) and raw.startswith(base64.b64decode(event["raw"]))


async def test_an_unusable_input_too_large_to_carry_whole_keeps_its_start(
    partner: tuple[LeadPipeline, web.Application],
) -> None:
    pipeline, _ = partner
    pipeline.max_output_bytes = 20_000
    raw = bytes(range(256)) * 100  # 25,600 bytes, not JSON: base64 alone would be 34,136
    output = await pipeline.process(raw, SOURCE)
    assert output.destination is Destination.ERRORS and len(output.value) <= 20_000
    event = event_of(output)
    assert event["reason"].startswith("output of") and "not valid JSON" in event["reason"]
    assert event["steps"] == [] and raw.startswith(base64.b64decode(event["raw"]))


async def test_error_and_failure_events_are_kept_for_the_web_consoles_recent_problems(
    partner: tuple[LeadPipeline, web.Application],
) -> None:
    """Every output of an error or failure lead, as written (bad input, a partner's error, a
    refusal), and nothing else (success, skip)."""
    from streams.recent_problems import RecentProblems

    pipeline, _ = partner
    pipeline.problems = RecentProblems()
    written = {}
    for raw in (b'{"id": "ok", "email": "ann@example.com"}', b'{"id": "skipped"}',
                b'{"id": "refused", "email": "x@fraud.example"}', b'{"id": "broken", "email": "no-at-sign"}',
                b"not json"):  # fmt: skip
        output = await pipeline.process(raw, SOURCE)
        written[output.outcome, orjson.loads(output.value)["id"]] = output.value
    kept = pipeline.problems.newest_first()
    [not_json] = [lead for _, lead in written if lead not in ("ok", "skipped", "refused", "broken")]
    assert [(p["outcome"], p["lead_id"], p["step"]) for p in kept] == [
        ("error", not_json, None),
        ("error", "broken", "check_blacklist"),
        ("failure", "refused", "check_blacklist"),
    ]
    for problem in kept:
        event = pipeline.problems.event(problem["id"])
        assert event == orjson.loads(written[problem["outcome"], problem["lead_id"]])
        assert (problem["topic"], problem["partition"], problem["offset"]) == ("leads.incoming", 3, 1234)
