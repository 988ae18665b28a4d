"""Helpers shared by the resilience tests (status policy, fallback chain, circuit, rate limit):
flows with a retry topic and an environment, scripted partners, a runner with its own metrics."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import yaml
from aiohttp import web
from helpers import Handler, Received, recording_app, serve
from prometheus_client import CollectorRegistry
from pytest_aiohttp import AiohttpServer

from streams.cache import CachedResponse, InMemoryCache
from streams.flow import Flow
from streams.http_client import HttpClient
from streams.loader import parse_flow
from streams.metrics import Metrics
from streams.outcomes import FlowResult, StepResult
from streams.runner import FlowRunner

FLOW = "test-flow"
LEAD: dict[str, Any] = {"id": "L1", "email": "ann@example.com"}
# Inline retries without the default backoff's wait (up to 0.2 s, then 0.4 s, with jitter).
FAST_RETRY: dict[str, Any] = {"backoff": "1ms", "max_backoff": "2ms"}
# One step asking for a score; most tests use it with their own fallback chain.
SCORE_STEP: dict[str, Any] = {
    "name": "score",
    "request": {"url": "/score", "query": {"email": "{{ lead.email }}"}},
    "map": {"score": "{{ response.score }}"},
}
SOAP_FAULT = b"""<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
  <soap:Body>
    <soap:Fault><faultcode>soap:Client</faultcode><faultstring>Lead rejected</faultstring></soap:Fault>
  </soap:Body>
</soap:Envelope>"""


def flow_document(
    base_url: str,
    steps: list[dict[str, Any]],
    *,
    integration: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
    retry_topic: bool = False,
    delayed_retry: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Like ``helpers.make_flow``'s document (one integration ``api``, loopback allowed unless
    ``integration`` says otherwise), plus ``topics.retry``/``delayed_retry`` on request, and inline retries
    without the default backoff (``integration["retry"]`` may set it back)."""
    topics = {"input": "in", "enriched": "out", "errors": "err"}
    if retry_topic:
        topics["retry"] = "retry"
    api: dict[str, Any] = {"base_url": base_url, "allow_loopback": True, **(integration or {})}
    api["retry"] = {**FAST_RETRY, **api.get("retry", {})}
    document = {
        "version": 1,
        "name": FLOW,
        "topics": topics,
        "settings": settings or {},
        "integrations": {"api": api},
        "steps": [{"integration": "api", **step} for step in steps],
    }
    if delayed_retry is not None:
        document["delayed_retry"] = delayed_retry
    return document


def build_flow(
    base_url: str,
    steps: list[dict[str, Any]],
    *,
    env: Mapping[str, str] | None = None,
    **options: Any,
) -> Flow:
    document = flow_document(base_url, steps, **options)
    return parse_flow(yaml.safe_dump(document, sort_keys=False), "test.yaml", env or {})


def score_step(**changes: Any) -> dict[str, Any]:
    return {**SCORE_STEP, **changes}


@dataclass
class Answer:
    status: int = 200
    payload: Any = field(default_factory=lambda: {"score": 7})
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # sent as is (with ``content_type``) instead of ``payload`` as JSON
    content_type: str = "application/json"


OK = Answer()


def answer(status: int, payload: Any = None, **headers: str) -> Answer:
    """A JSON answer; header keyword names use ``_`` for ``-`` (``Retry_After="1"``)."""
    named = {name.replace("_", "-"): value for name, value in headers.items()}
    return Answer(status, payload if payload is not None else {"message": f"status {status}"}, named)


class Script:
    """A partner answering with ``answers`` in turn, repeating the last; ``answers`` may be
    replaced between leads. Records the monotonic arrival time of every request."""

    def __init__(self, *answers: Answer) -> None:
        self.answers: list[Answer] = list(answers) or [OK]
        self.times: list[float] = []
        self._served_before = 0  # requests answered by earlier scripts

    def then(self, *answers: Answer) -> None:
        """From the next request on, answer with these in turn (repeating the last)."""
        self.answers, self._served_before = list(answers), len(self.times)

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.times.append(time.monotonic())
        turn = len(self.times) - self._served_before
        reply = self.answers[min(turn, len(self.answers)) - 1]
        if reply.body is not None:
            return web.Response(
                status=reply.status, body=reply.body, content_type=reply.content_type, headers=reply.headers
            )
        return web.json_response(reply.payload, status=reply.status, headers=reply.headers)


def stalling(entered: asyncio.Event | None = None) -> Handler:
    """A partner that never answers (the request times out)."""
    never = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        if entered is not None:
            entered.set()
        await never.wait()
        raise AssertionError("unreachable")

    return handler


@dataclass
class Partner:
    url: str
    script: Script
    received: list[Received]

    @property
    def requests(self) -> int:
        return len(self.script.times)


async def partner(aiohttp_server: AiohttpServer, *answers: Answer) -> Partner:
    script = Script(*answers)
    app, received = recording_app(script)
    return Partner(await serve(aiohttp_server, app), script, received)


async def stalled_partner(aiohttp_server: AiohttpServer) -> tuple[str, list[Received]]:
    app, received = recording_app(stalling())
    return await serve(aiohttp_server, app), received


def closed_port_url() -> str:
    """A local URL nobody listens on (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@dataclass
class Harness:
    runner: FlowRunner
    metrics: Metrics

    async def run(self, lead: dict[str, Any] | None = None, lead_id: str | None = None) -> FlowResult:
        lead = lead if lead is not None else LEAD
        return await self.runner.run(lead, lead_id or str(lead.get("id", "L1")))

    async def run_many(self, leads: Iterable[dict[str, Any]]) -> list[FlowResult]:
        """All at once, through the one runner (shared limiter and circuit)."""
        return list(await asyncio.gather(*(self.run(lead) for lead in leads)))

    def sample(self, name: str, **labels: str) -> float:
        """A metric sample of this flow (0.0 when never set)."""
        value = self.metrics.registry.get_sample_value(name, {"flow": FLOW, **labels})
        return 0.0 if value is None else value


@asynccontextmanager
async def harness(flow: Flow, cache: InMemoryCache | None = None) -> AsyncIterator[Harness]:
    """A FlowRunner with a real HttpClient and metrics in a fresh registry."""
    client = HttpClient()
    metrics = Metrics(CollectorRegistry())
    try:
        yield Harness(FlowRunner(flow, client, metrics, cache=cache), metrics)
    finally:
        await client.close()


class AgedCache(InMemoryCache):
    """An ``InMemoryCache`` whose entries read as ``age`` seconds older than they were stored."""

    def __init__(self) -> None:
        super().__init__()
        self.age = 0.0

    async def get(self, key: str) -> CachedResponse | None:
        entry = await super().get(key)
        return None if entry is None else replace(entry, stored_at=entry.stored_at - self.age)


def only_step(result: FlowResult) -> StepResult:
    assert len(result.steps) == 1, result.steps
    return result.steps[0]
