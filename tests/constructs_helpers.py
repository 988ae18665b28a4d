"""A lead, a by-path partner and the outcomes of a flow run, for the
test_constructs*_in_flows.py modules."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from helpers import Handler

from streams.outcomes import FlowResult, Outcome

LEAD: dict[str, Any] = {"id": "L1", "email": "ann@example.com", "state": "CA"}
OK = {"ok": True}


def by_path(answers: dict[str, Any]) -> Handler:
    """JSON answers keyed by the request's first path segment ("/a/x" -> "a")."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(answers[request.path.strip("/").split("/")[0]])

    return handler


def outcomes(result: FlowResult) -> list[tuple[str, Outcome, str | None]]:
    return [(step.name, step.outcome, step.reason) for step in result.steps]
