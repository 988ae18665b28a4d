"""Small shared helpers for the engine tests: flows from dicts, a recording aiohttp app."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from multidict import CIMultiDictProxy, MultiDictProxy
from pytest_aiohttp import AiohttpServer

from streams.flow import Flow
from streams.http_client import HttpClient
from streams.loader import parse_flow
from streams.outcomes import FlowResult
from streams.runner import FlowRunner

ROOT = Path(__file__).resolve().parents[1]
DEMO_FLOW = ROOT / "examples" / "flows" / "demo.yaml"
API_KEY = "k3y-for-tests-0123"

if str(ROOT / "examples" / "demo") not in sys.path:  # conftest adds it too; same module either way
    sys.path.insert(0, str(ROOT / "examples" / "demo"))

from partner_api import REQUESTS, create_partner_app  # noqa: E402

__all__ = ["API_KEY", "DEMO_FLOW", "REQUESTS", "create_partner_app"]


def demo_flow(base_url: str, api_key: str = API_KEY) -> Flow:
    env = {"INTERNAL_API_KEY": api_key, "PARTNER_URL": base_url}
    return parse_flow(DEMO_FLOW.read_text(encoding="utf-8"), str(DEMO_FLOW), env)


def make_flow(
    base_url: str,
    steps: list[dict[str, Any]],
    *,
    integration: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
) -> Flow:
    """A flow with one integration ``api`` at ``base_url``; steps default to using it."""
    document = {
        "version": 1,
        "name": "test-flow",
        "topics": {"input": "in", "enriched": "out", "errors": "err"},
        "settings": settings or {},
        "integrations": {"api": {"base_url": base_url, **(integration or {})}},
        "steps": [{"integration": "api", **step} for step in steps],
    }
    return parse_flow(yaml.safe_dump(document, sort_keys=False), "test.yaml", {})


async def run_once(flow: Flow, lead: dict[str, Any], lead_id: str = "L1") -> FlowResult:
    client = HttpClient()
    try:
        return await FlowRunner(flow, client).run(lead, lead_id)
    finally:
        await client.close()


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: MultiDictProxy[str]
    headers: CIMultiDictProxy[str]
    body: bytes


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def recording_app(handler: Handler) -> tuple[web.Application, list[Received]]:
    """An app that records every request (any method, any path) and answers with ``handler``."""
    received: list[Received] = []

    async def record(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        received.append(Received(request.method, request.path, request.query, request.headers, body))
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    return app, received


def json_handler(payload: Any, status: int = 200) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(payload, status=status)

    return handler


async def serve(aiohttp_server: AiohttpServer, app: web.Application) -> str:
    """Start ``app`` on a real local port; return its base URL."""
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")
