"""A partner API that misbehaves on purpose, for `make reliability`.

POST /check answers like the demo blacklist API, but a seeded share of requests
gets a 5xx, hangs past the client's timeout, or has its connection reset, and
every `burst_every` seconds the partner answers 429 with Retry-After for one
second. It counts requests per wall-clock second so the run can prove the rate
limit held. GET /stats returns the counts.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Faults:
    server_errors: float = 0.30
    timeouts: float = 0.10
    resets: float = 0.02
    burst_every: float = 7.0  # seconds between one-second 429 bursts (0: none)
    hang_for: float = 5.0  # longer than the flow's timeout
    seed: int = 11


@dataclass
class Stats:
    per_second: Counter[int] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0


FAULTS = web.AppKey("faults", Faults)
STATS = web.AppKey("stats", Stats)
RNG = web.AppKey("rng", random.Random)
API_KEY = web.AppKey("api_key", str)


async def check(request: web.Request) -> web.StreamResponse:
    stats, faults = request.app[STATS], request.app[FAULTS]
    now = time.time()
    stats.per_second[int(now)] += 1
    stats.in_flight += 1
    stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
    try:
        return await answer(request, faults, stats, now)
    finally:
        stats.in_flight -= 1


async def answer(request: web.Request, faults: Faults, stats: Stats, now: float) -> web.StreamResponse:
    if request.headers.get("X-API-Key") != request.app[API_KEY]:
        stats.outcomes["401"] += 1
        return web.json_response({"error": "invalid API key"}, status=401)
    if faults.burst_every and int(now) % int(faults.burst_every) == 0:
        stats.outcomes["429"] += 1
        return web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": "1"})
    roll = request.app[RNG].random()
    if roll < faults.resets:
        stats.outcomes["reset"] += 1
        assert request.transport is not None
        request.transport.abort()  # connection reset mid-request
        return web.Response()
    if roll < faults.resets + faults.timeouts:
        stats.outcomes["hang"] += 1
        await asyncio.sleep(faults.hang_for)  # simulated unresponsive partner
    elif roll < faults.resets + faults.timeouts + faults.server_errors:
        status = request.app[RNG].choice([500, 502, 504])
        stats.outcomes[str(status)] += 1
        return web.json_response({"error": "partner failure"}, status=status)
    body = await request.json()
    email = str(body.get("email") or "")
    listed = email.endswith("@spam.example")
    stats.outcomes["200"] += 1
    return web.json_response(
        {
            "is_blacklisted": listed,
            "reason": "blacklisted domain" if listed else None,
            "risk_score": 99 if listed else 10,
        }
    )


async def stats_view(request: web.Request) -> web.Response:
    stats = request.app[STATS]
    return web.json_response(
        {
            "per_second": {str(k): v for k, v in sorted(stats.per_second.items())},
            "outcomes": dict(stats.outcomes),
            "max_in_flight": stats.max_in_flight,
        }
    )


def create_faulty_partner(api_key: str, faults: Faults | None = None) -> web.Application:
    app = web.Application()
    app[API_KEY] = api_key
    app[FAULTS] = faults or Faults()
    app[STATS] = Stats()
    app[RNG] = random.Random(app[FAULTS].seed)
    app.router.add_post("/check", check)
    app.router.add_get("/stats", stats_view)
    return app
