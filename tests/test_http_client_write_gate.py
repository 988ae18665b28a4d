"""Review finding 8: the time a request waits at its rate limiter's write gate (the last step
before aiohttp writes it) is not the partner's: it must not count against the step's `timeout`,
which would end "timeout after 1s" (a circuit failure, a retry) for a request the partner never saw.
Real aiohttp partners; the gate is made to hold the write by a write already in its log."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer
from yarl import URL

from streams.flow import Integration
from streams.http_client import HttpClient
from streams.http_types import OutgoingRequest
from streams.ratelimit import RateLimiter

HOLD = 0.4  # s the gate holds the write


class ShiftedClock:
    """Monotonic time plus an offset, so a test can age the gate's log instead of sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


async def gate_holding_the_next_write() -> RateLimiter:
    """A 1/s limiter whose one write per window happened ``1 - HOLD`` s ago, its gate armed in this
    task for the next request (as ``acquire()`` arms it before every rate-limited send)."""
    clock = ShiftedClock()
    limiter = RateLimiter(1.0, clock=clock)
    assert limiter.write_wait() == 0.0  # the window's one write, now
    clock.offset = 1.0 - HOLD  # ...which was 0.6 s ago
    assert await limiter.acquire() == 0.0  # a free slot, and the gate armed
    return limiter


async def serve(aiohttp_server: AiohttpServer, delay: float) -> URL:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        return web.json_response({"score": 7})

    app = web.Application()
    app.router.add_route("*", "/score", handler)
    server = await aiohttp_server(app)
    return server.make_url("/score")


INTEGRATION = Integration(name="api", allow_loopback=True, rate_limit=1.0)


@pytest.mark.parametrize("body", [None, b'{"a": 1}'])  # (a body's write is gated at its first chunk)
async def test_the_wait_at_the_write_gate_is_not_the_partners_time(
    aiohttp_server: AiohttpServer, body: bytes | None
) -> None:
    url = await serve(aiohttp_server, delay=0.0)
    client = HttpClient()
    try:
        await gate_holding_the_next_write()
        started = time.monotonic()
        answer = await client.send(INTEGRATION, OutgoingRequest("POST", url, {}, body), 0.2)
        elapsed = time.monotonic() - started
    finally:
        await client.close()
    assert answer.status == 200
    assert elapsed >= HOLD - 0.05, elapsed  # the gate did hold it, longer than the timeout


async def test_the_partner_still_gets_only_its_timeout_after_the_gate(aiohttp_server: AiohttpServer) -> None:
    url = await serve(aiohttp_server, delay=5.0)
    client = HttpClient()
    try:
        await gate_holding_the_next_write()
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await client.send(INTEGRATION, OutgoingRequest("GET", url), 0.2)
        elapsed = time.monotonic() - started
    finally:
        await client.close()
    assert HOLD + 0.2 - 0.05 <= elapsed < HOLD + 0.2 + 1.0, elapsed
