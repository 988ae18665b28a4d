"""Auth schemes, one module each, shaped like httpx's auth flow.

``auth_flow(request)`` is a generator: it yields a request to send and receives
the response; yielding again means "send this one too" (token fetch, refresh and retry).
That keeps schemes free of I/O and testable with ``next()`` / ``send()`` / ``throw()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from typing import Protocol

from streams.http_types import HttpResult, OutgoingRequest

AuthFlow = Generator[OutgoingRequest, HttpResult, None]
Send = Callable[[OutgoingRequest], Awaitable[HttpResult]]


class Auth(Protocol):
    def auth_flow(self, request: OutgoingRequest) -> AuthFlow: ...


class AuthError(Exception):
    """Authentication could not be completed, e.g. the token endpoint failed.

    A separate type so the step can report "auth failed" rather than blame the partner API.
    The message is safe to show and log: it never holds secrets or token values. ``response``
    is the auth server's answer when there was one.
    """

    def __init__(self, message: str, response: HttpResult | None = None) -> None:
        super().__init__(message)
        self.response = response


class NoAuth:
    def auth_flow(self, request: OutgoingRequest) -> AuthFlow:
        yield request


class _SenderGone(Exception):
    """The task sending a shared request was cancelled; a waiting caller must send it instead."""


# In-flight shared requests, per event loop and coalesce key. Entries live only while in flight.
_in_flight: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Future[HttpResult]] = {}


async def send_with_auth(auth: Auth, request: OutgoingRequest, send: Send) -> tuple[HttpResult, int]:
    """Drive an auth flow; returns the last response and the number of attempts.

    Attempts count the requests sent without a ``coalesce_key`` (the call itself and its
    retries), not auxiliary token fetches. Exceptions from ``send`` are thrown into the flow,
    so a scheme can turn a failed token fetch into an ``AuthError``; unhandled they propagate.
    Exceptions a flow raises (``AuthError``, ``RequestBuildError``) propagate too.
    """
    flow = auth.auth_flow(request)
    outgoing = next(flow)
    attempts = 0
    while True:
        try:
            if outgoing.coalesce_key is None:
                attempts += 1
                response = await send(outgoing)
            else:
                response = await _send_shared(outgoing, send)
        except Exception as exc:
            try:
                outgoing = flow.throw(exc)
            except StopIteration:
                raise exc from None
            continue
        # No await between receiving a shared response and handing it to the flow: the first flow
        # to get a token caches it before any other task can look for one.
        try:
            outgoing = flow.send(response)
        except StopIteration:
            return response, attempts


async def _send_shared(outgoing: OutgoingRequest, send: Send) -> HttpResult:
    """Send ``outgoing`` unless a request with the same key is in flight; then share its response."""
    loop = asyncio.get_running_loop()
    slot = (loop, outgoing.coalesce_key or "")
    while (pending := _in_flight.get(slot)) is not None:
        try:
            return await asyncio.shield(pending)  # shield: a cancelled waiter must not cancel the rest
        except _SenderGone:
            continue
    future: asyncio.Future[HttpResult] = loop.create_future()
    _in_flight[slot] = future
    try:
        response = await send(outgoing)
    except asyncio.CancelledError:
        _fail(future, _SenderGone())
        raise
    except Exception as exc:
        _fail(future, exc)
        raise
    finally:
        del _in_flight[slot]
    future.set_result(response)
    return response


def _fail(future: asyncio.Future[HttpResult], exc: BaseException) -> None:
    future.set_exception(exc)
    future.exception()  # mark retrieved: no "never retrieved" warning when nobody was waiting
