"""An integration's ``rate_limit`` through a whole flow: many leads at once through one FlowRunner
against a real local server that notes when each request arrives.

The limiter's bound (at most ``ceil(rate) + burst`` sends in any ``[t, t + 1)``) is tight and holds for
the booked send times. What the server sees is later by a latency that varies: the first request also
opens the connection (a few ms) and every sleeping sender wakes a little late. So the server's count is
taken over windows ``JITTER`` shorter than a second; any overshoot of the spacing itself (20/s spaced at
49 ms, a burst on top of a full second's rate) still shows."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from aiohttp import web
from helpers import recording_app, serve
from pytest_aiohttp import AiohttpServer
from resilience_helpers import LEAD, SCORE_STEP, Harness, answer, build_flow, harness, partner
from yarl import URL

from streams.flow import Integration
from streams.http_client import HttpClient
from streams.http_types import OutgoingRequest
from streams.outcomes import Outcome
from streams.ratelimit import RateLimiter, busiest_window

JITTER = 0.01  # seconds of arrival-time jitter the server-side count tolerates


def busiest_second(times: list[float]) -> int:
    return busiest_window(times, 1.0 - JITTER)


def test_busiest_window_counts_half_open_windows() -> None:
    assert busiest_window([]) == 0
    assert busiest_window([0.0, 0.5, 0.999, 1.0, 1.5]) == 3  # [0, 1) holds three; 1.0 starts the next
    assert busiest_window([2.0, 0.0, 1.0]) == 1
    assert busiest_window([0.0, 0.5, 0.995], 0.99) == 2


async def run_leads(h: Harness, count: int) -> float:
    """Run ``count`` leads at once; return the seconds they took."""
    started = time.monotonic()
    results = await h.run_many({**LEAD, "id": f"L{n}"} for n in range(count))
    elapsed = time.monotonic() - started
    assert all(result.outcome is Outcome.SUCCESS for result in results)
    return elapsed


async def test_the_rate_limit_spreads_concurrent_leads(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server)
    async with harness(build_flow(api.url, [SCORE_STEP], integration={"rate_limit": "20/s"})) as h:
        elapsed = await run_leads(h, 50)
        assert api.requests == 50
        assert busiest_second(api.script.times) <= 20
        assert elapsed >= 2.2  # 49 gaps of 50 ms: the limit was applied
        waits = h.sample("leadstreams_rate_limit_wait_seconds_count", integration="api")
        assert waits == 50


async def test_burst_lets_that_many_more_through_at_once(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server)
    flow = build_flow(api.url, [SCORE_STEP], integration={"rate_limit": "20/s", "burst": 10})
    async with harness(flow) as h:
        elapsed = await run_leads(h, 40)
    assert busiest_second(api.script.times) <= 30
    assert elapsed >= 1.3  # 40 - 1 - 10 gaps of 50 ms


async def test_a_worker_share_scales_the_limit(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server)
    async with harness(build_flow(api.url, [SCORE_STEP], integration={"rate_limit": "20/s"})) as h:
        h.runner.protections.set_share(0.5)
        elapsed = await run_leads(h, 25)
    assert busiest_second(api.script.times) <= 10
    assert elapsed >= 2.2  # 24 gaps of 100 ms


async def test_retries_wait_for_the_limiter_too(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server, answer(502))
    async with harness(build_flow(api.url, [SCORE_STEP], integration={"rate_limit": "10/s"})) as h:
        started = time.monotonic()
        result = await h.run()
        elapsed = time.monotonic() - started
    assert api.requests == 3 and result.outcome is Outcome.ERROR
    assert elapsed >= 0.18  # three sends 100 ms apart, though the backoff is 1 ms
    first, _, last = api.script.times
    assert last - first >= 0.18


async def test_the_in_flight_gauge_counts_requests_the_partner_holds(aiohttp_server: AiohttpServer) -> None:
    """The gauge is read when scraped: three unanswered requests show as 3, then 0 once answered."""
    release, all_arrived = asyncio.Event(), asyncio.Event()
    arrived: list[float] = []

    async def held(request: web.Request) -> web.StreamResponse:
        arrived.append(time.monotonic())
        if len(arrived) == 3:
            all_arrived.set()
        await release.wait()
        return web.json_response({"ok": True})

    app, _ = recording_app(held)
    url = await serve(aiohttp_server, app)
    async with harness(build_flow(url, [SCORE_STEP])) as h:
        leads = asyncio.ensure_future(h.run_many({**LEAD, "id": f"L{n}"} for n in range(3)))
        await asyncio.wait_for(all_arrived.wait(), 5)
        assert h.sample("leadstreams_requests_in_flight", integration="api") == 3
        release.set()
        await leads
        assert h.sample("leadstreams_requests_in_flight", integration="api") == 0
        # no rate limit on this integration: nothing waited for a limiter, nothing observed
        assert h.sample("leadstreams_rate_limit_wait_seconds_count", integration="api") == 0


@pytest.mark.parametrize("body", [b'{"email": "a@b.example"}', None], ids=["with a body", "without"])
async def test_the_partner_sees_the_bound_when_writes_come_late(
    aiohttp_server: AiohttpServer, body: bytes | None
) -> None:
    """The gate is passed where aiohttp writes the request (streams.http_client): the first 20 of
    80 callers at 40/s reach ``send`` 0.5 s after their acquire (as after a new connection or a
    stalled loop) and land among the next 20. Counted at a real server: at most 40 in any second
    (without the gate 60: every late one on top of a full second)."""
    api = await partner(aiohttp_server)
    url = api.url
    integration = Integration("api", base_url=url, rate_limit=40, allow_loopback=True)
    limiter, client = RateLimiter(40.0), HttpClient()

    async def caller(index: int) -> None:
        await limiter.acquire()
        if index < 20:
            await asyncio.sleep(0.5)  # this request's write comes late
        request = OutgoingRequest("POST" if body else "GET", URL(url) / "check", body=body)
        result = await client.send(integration, request, 10.0)
        assert result.status == 200

    try:
        await asyncio.gather(*(caller(index) for index in range(80)))
    finally:
        await client.close()
    assert api.requests == 80
    assert busiest_second(api.script.times) <= 40


async def test_share_changes_and_circuit_changes_are_logged(
    aiohttp_server: AiohttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    api = await partner(aiohttp_server, answer(503))
    integration = {
        "rate_limit": "300/s",
        "circuit": {"failure_rate": 0.5, "window": "10s", "min_calls": 2, "open_for": "50ms"},
    }
    caplog.set_level(logging.INFO, logger="leadstreams.guards")
    async with harness(build_flow(api.url, [SCORE_STEP], integration=integration)) as h:
        h.runner.protections.set_share(0.5)
        h.runner.protections.set_share(0.5)  # unchanged: no line
        h.runner.protections.set_share(0.25)
        await h.run_many({**LEAD, "id": f"L{n}"} for n in range(3))
        api.script.then(answer(200, {"score": 1}))
        await asyncio.sleep(0.06)  # past open_for: the next call is a probe
        await h.run()
    lines = [(record.levelname, record.getMessage()) for record in caplog.records]
    assert lines[:2] == [
        ("INFO", "rate limit for api: this worker's share is now 150/s of 300/s"),
        ("INFO", "rate limit for api: this worker's share is now 75/s of 300/s"),
    ]
    opened = "circuit of api opened after 2 failures: 2 of 2 calls within 10s failed (100%)"
    opened += ", the last: HTTP 503"
    assert ("WARNING", opened) in lines
    assert ("INFO", "circuit of api closed: a probe succeeded after 0.05s open") in lines


def test_the_share_of_the_rate_limits_is_a_gauge_the_web_console_reads() -> None:
    from prometheus_client import CollectorRegistry

    from streams.metrics import Metrics
    from streams.protections import Protections

    registry = CollectorRegistry()
    flow = build_flow("http://127.0.0.1:9", [SCORE_STEP], integration={"rate_limit": "300/s"})
    protections = Protections(flow, Metrics(registry))
    share = {"flow": flow.name}
    assert registry.get_sample_value("leadstreams_rate_limit_share", share) == 1.0
    protections.set_share(0.25)
    assert registry.get_sample_value("leadstreams_rate_limit_share", share) == 0.25
