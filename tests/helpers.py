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
from streams.step.exchange import Exchange

ROOT = Path(__file__).resolve().parents[1]
DEMO_FLOW = ROOT / "examples" / "flows" / "demo.yaml"
API_KEY = "k3y-for-tests-0123"

if str(ROOT / "examples" / "demo") not in sys.path:  # conftest adds it too; same module either way
    sys.path.insert(0, str(ROOT / "examples" / "demo"))

from partner_api import REQUESTS, create_partner_app  # noqa: E402

__all__ = ["API_KEY", "DEMO_FLOW", "REQUESTS", "create_partner_app"]


def demo_flow(base_url: str, api_key: str = API_KEY) -> Flow:
    env = {"INTERNAL_API_KEY": api_key, "PARTNER_URL": base_url, "PARTNER_ALLOW_LOOPBACK": "true"}
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
        "integrations": {"api": {"base_url": base_url, "allow_loopback": True, **(integration or {})}},
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


# --- flow constructs, saved cases, test console, CLI `try`/`test` ---

FLOWS = ROOT / "examples" / "flows"

if str(ROOT / "examples" / "partners") not in sys.path:
    sys.path.insert(0, str(ROOT / "examples" / "partners"))

import batch_buyer  # noqa: E402
import seed_partner  # noqa: E402


async def run_steps(
    aiohttp_server: AiohttpServer,
    handler: Handler,
    steps: list[dict[str, Any]],
    lead: dict[str, Any],
    **flow_options: Any,
) -> tuple[FlowResult, list[Received]]:
    """One ``make_flow`` flow over ``lead`` against a recording app answering with ``handler``."""
    app, received = recording_app(handler)
    flow = make_flow(await serve(aiohttp_server, app), steps, **flow_options)
    return await run_once(flow, lead, str(lead.get("id", "L1"))), received


async def run_exchanges(flow: Flow, lead: dict[str, Any]) -> tuple[FlowResult, dict[str, Exchange]]:
    """Run ``flow`` over ``lead`` keeping what each step sent and got (as the test console does)."""
    client = HttpClient()
    exchanges: dict[str, Exchange] = {}
    try:
        return await FlowRunner(flow, client).run(lead, str(lead.get("id", "L1")), exchanges), exchanges
    finally:
        await client.close()


def seed_env(base_url: str) -> dict[str, str]:
    """The environment the example flows need to talk to the seed partner app at ``base_url``."""
    sp = seed_partner
    return {
        "PARTNER_URL": base_url,
        "PARTNER_ALLOW_LOOPBACK": "true",
        "INTERNAL_API_KEY": sp.INTERNAL_KEY,
        "ROUTER_KEY": sp.ROUTER_KEY,
        "PARTNER_TOKEN": sp.PARTNER_TOKEN,
        "SOAP_USER": sp.SOAP_USER,
        "SOAP_PASSWORD": sp.SOAP_PASSWORD,
        "SCORE_USER": sp.SCORE_USER,
        "SCORE_PASSWORD": sp.SCORE_PASSWORD,
        "CRM_CLIENT_ID": sp.CLIENT_ID,
        "CRM_CLIENT_SECRET": sp.CLIENT_SECRET,
        "HMAC_KEY_ID": sp.HMAC_KEY_ID,
        "HMAC_SECRET": sp.HMAC_SECRET,
        "BUYER_TOKEN": batch_buyer.BUYER_TOKEN,
    }
