"""A partner API that misbehaves on purpose, for `make reliability`.

POST /check answers like the demo blacklist API, but a seeded share of requests
gets a 5xx, hangs past the client's timeout, or has its connection reset, and
every `burst_every` seconds the partner answers 429 with Retry-After for one
second. A share of the leads (`slow_share`, chosen by a hash of the email, so a
replayed lead is as slow again) is answered only after 1-20 s; the slow requests in
flight are listed, so a run can kill the worker while one is at the head of its
partition. It counts requests per wall-clock second so the run can prove the rate
limit held. GET /stats returns the counts.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
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
    slow_share: float = 0.0  # leads answered only after `slow_for` seconds, by a hash of the email
    slow_for: tuple[float, float] = (1.0, 20.0)

    def slowness(self, email: str) -> float:
        """Seconds the answer for this email is held back (0: at once); the same every time."""
        digest = int.from_bytes(hashlib.blake2b(email.encode(), digest_size=8).digest())
        if digest % 10_000 >= self.slow_share * 10_000:
            return 0.0
        low, high = self.slow_for
        return low + (high - low) * ((digest >> 32) % 1000) / 999


@dataclass(frozen=True)
class SlowCall:
    email: str
    started: float  # time.time()
    until: float


@dataclass
class Stats:
    per_second: Counter[int] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    slow: dict[int, SlowCall] = field(default_factory=dict)  # the slow requests in flight
    serial: itertools.count[int] = field(default_factory=itertools.count)


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
    if delay := faults.slowness(email):
        started, serial = time.time(), next(stats.serial)
        stats.slow[serial] = SlowCall(email, started, started + delay)
        try:
            await asyncio.sleep(delay)  # simulated slow answer
        finally:
            del stats.slow[serial]
        stats.outcomes["slow"] += 1
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
