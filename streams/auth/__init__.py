"""Auth schemes, one module each, shaped like httpx's auth flow.

``auth_flow(request)`` is a generator: it yields a request to send and receives
the response; yielding again means "send this one too" (refresh and retry).
That keeps schemes free of I/O and testable with ``next()`` / ``send()``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, Protocol

from streams.http_types import HttpResult, OutgoingRequest

AuthFlow = Generator[OutgoingRequest, HttpResult, None]


class Auth(Protocol):
    def auth_flow(self, request: OutgoingRequest) -> AuthFlow: ...


class NoAuth:
    def auth_flow(self, request: OutgoingRequest) -> AuthFlow:
        yield request


async def send_with_auth(
    auth: Auth,
    request: OutgoingRequest,
    send: Callable[[OutgoingRequest], Awaitable[HttpResult]],
) -> tuple[HttpResult, int]:
    """Drive an auth flow; returns the last response and how many requests were sent."""
    flow = auth.auth_flow(request)
    outgoing = next(flow)
    sent = 0
    while True:
        response = await send(outgoing)
        sent += 1
        try:
            outgoing = flow.send(response)
        except StopIteration:
            return response, sent


def build_auth(spec: dict[str, Any] | None) -> Auth:
    """An Auth from the integration's rendered ``auth:`` mapping."""
    from streams.auth.api_key import ApiKeyAuth
    from streams.auth.basic import BasicAuth
    from streams.auth.bearer import BearerAuth

    if not spec:
        return NoAuth()
    kind = spec["type"]
    if kind == "api_key":
        return ApiKeyAuth(value=str(spec["value"]), header=spec.get("header"), query=spec.get("query"))
    if kind == "basic":
        return BasicAuth(username=str(spec["username"]), password=str(spec["password"]))
    if kind == "bearer":
        return BearerAuth(token=str(spec["token"]))
    raise ValueError(f"unknown auth type {kind!r}")
