"""A partner API that misbehaves on purpose, for `make reliability`.

POST /check answers like the demo blacklist API, but a seeded share of requests
gets a 5xx, hangs past the client's timeout, or has its connection reset, and
every `burst_every` seconds the partner answers 429 with Retry-After for one
second. A share of the leads (`slow_share`, chosen by a hash of the email, so a
replayed lead is as slow again) is answered only after 1-20 s; the slow requests in
flight are listed, so a run can kill the worker while one is at the head of its
partition. It stamps every request's arrival so the run can prove the rate limit held
in every sliding second. GET /stats returns the counts and the stamps.

Run as a script (``python faulty_partner.py --port N``; the key in PARTNER_API_KEY,
the faults as JSON in --faults) it is a process of its own, and it stamps each request
with the kernel's receive time of its first bytes (SO_TIMESTAMPNS), not with the time
its event loop got to it. A real partner counts requests on its own machine, as they
arrive; this stand-in shares two cores with the worker, the broker, the run's driver
and CPU hogs, and its loop was measured waiting 100-300 ms for a core (in the driver's
loop, longer): stamps taken then bunch a second of requests into less than a second.
The kernel stamps a request when the sender's write hands it over (on loopback, in the
sender's own write call), which is what a partner's machine sees.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web
from kernel_stamps import arrival, serve_stamped


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
    arrivals: list[float] = field(default_factory=list)  # time.time() of every request, in order
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
    stats.arrivals.append(arrival(request, now))
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
            "in_flight": stats.in_flight,
            "arrivals": stats.arrivals,
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


async def serve_forever(app: web.Application, port: int) -> None:
    runner, _ = await serve_stamped(app, port)
    try:
        await asyncio.Future()  # until the process is stopped
    finally:
        await runner.cleanup()


def faults_to_json(faults: Faults) -> str:
    return json.dumps(faults.__dict__)


def faults_from_json(text: str) -> Faults:
    fields = json.loads(text)
    return Faults(**{**fields, "slow_for": tuple(fields["slow_for"])})


def main() -> None:
    parser = argparse.ArgumentParser(description="The fault-injecting partner, in its own process.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--faults", default=faults_to_json(Faults()), help="Faults as JSON")
    args = parser.parse_args()
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # the resets injected on purpose
    app = create_faulty_partner(os.environ["PARTNER_API_KEY"], faults_from_json(args.faults))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(app, args.port))


if __name__ == "__main__":
    main()
