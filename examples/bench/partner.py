"""The bench's partner API (aiohttp): POST /score {id, email} -> {score, accepted, reason}.

Configurable latency (seconds before each answer) and error rate (that fraction of
requests is answered HTTP 422, an error that neither side retries). It records the
monotonic arrival time of every request (rate-limit precision: the kernel's receive time
of its first bytes when served by ``kernel_stamps.serve_stamped``, see there why) and, when asked, the
time it spent on each lead by id (to subtract from end-to-end latency). Kept as light
as possible (orjson, no middleware) so that it is not what a scenario measures.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import orjson
from aiohttp import web
from kernel_stamps import arrival

JSON = "application/json"


@dataclass
class PartnerState:
    latency: float = 0.0  # seconds before each answer
    error_rate: float = 0.0  # fraction answered 422
    record_durations: bool = False
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of each request
    durations_ms: dict[str, float] = field(default_factory=dict)  # lead id -> time spent here
    errors: int = 0

    def reset(self, latency: float = 0.0, error_rate: float = 0.0, record_durations: bool = False) -> None:
        """Start a scenario run: new settings, nothing recorded."""
        self.latency, self.error_rate, self.record_durations = latency, error_rate, record_durations
        self.arrivals = []
        self.durations_ms = {}
        self.errors = 0

    @property
    def requests(self) -> int:
        return len(self.arrivals)


STATE = web.AppKey("state", PartnerState)


async def score(request: web.Request) -> web.Response:
    state = request.app[STATE]
    started = time.monotonic()
    now = time.time()
    state.arrivals.append(arrival(request, now) - now + started)  # on the monotonic clock
    body = orjson.loads(await request.read())
    if state.latency:
        await asyncio.sleep(state.latency)
    if state.error_rate and random.random() < state.error_rate:
        state.errors += 1
        response = web.Response(body=b'{"reason": "partner refused the lead"}', status=422, content_type=JSON)
    else:
        email = str(body.get("email") or "")
        accepted = len(email) % 20 != 0  # about 5 % are rejected (outcome failure)
        answer = {"score": len(email) * 7 % 100, "accepted": accepted, "reason": None if accepted else "low"}
        response = web.Response(body=orjson.dumps(answer), content_type=JSON)
    if state.record_durations:
        state.durations_ms[str(body.get("id"))] = (time.monotonic() - started) * 1000
    return response


def create_partner(state: PartnerState) -> web.Application:
    app = web.Application()
    app[STATE] = state
    app.router.add_post("/score", score)
    return app
