"""The web console on a worker's web server: its backend (the running flows, their live
numbers, the recent problems), the sampling task behind the live numbers, and the routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time

from prometheus_client import CollectorRegistry

from agents.faust_seam import LeadApp, add_routes
from agents.flow_set import FlowSet
from agents.web_console.backends import WorkerBackend, masked_problems
from agents.web_console.routes import ConsoleRoutes
from agents.web_console.token import ConsoleToken
from streams.flow import Flow
from streams.live_stats import LiveStats
from streams.recent_problems import RecentProblems

log = logging.getLogger("leadstreams.console")

WATCHED_EVERY = 2.0  # seconds between samples while the page is open: its refresh
IDLE_EVERY = 10.0  # ... and while nobody looks: the sparkline's spacing
WATCHED_FOR = 60.0  # the page is open when its numbers were asked this recently


def add_console(
    app: LeadApp,
    flows: FlowSet,
    registry: CollectorRegistry,
    problems: RecentProblems,
    token: ConsoleToken,
    test_console: bool,
) -> None:
    live = LiveStats(registry)
    sampling = Sampling(live)

    def running() -> dict[str, Flow]:
        return {worker.path: worker.flow for worker in flows.running()}

    def rejected() -> dict[str, list[str]]:
        """Files with problems; a running flow's file too (its newer version was refused)."""
        paths = {worker.path for worker in flows.running()}
        found = {}
        for path, problems in flows.problems.items():
            shown = masked_problems(path, [str(p) for p in problems], os.environ)
            if path in paths:
                shown.append("(the version before this change keeps running)")
            found[path] = shown
        return found

    backend = WorkerBackend(running, rejected, live, problems, os.environ, test_console,
                            on_view=sampling.viewed)  # fmt: skip
    add_routes(app, ConsoleRoutes(backend, token).routes())

    app.task(sampling.run_forever)


class Sampling:
    """The registry read every 2 s while the page is open, every 10 s otherwise (the first
    read before any lead). A collect takes ~0.1 s for a worker of 50 busy flows: in a thread,
    and idle at a fifth of the page's pace (make bench F1 measures a worker's idle CPU)."""

    def __init__(self, live: LiveStats) -> None:
        self.live = live
        self.viewed_at = -math.inf
        self._viewer = asyncio.Event()

    def viewed(self) -> None:
        self.viewed_at = time.monotonic()
        self._viewer.set()

    async def run_forever(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.live.sample)
            except Exception:  # the page's numbers must never stop the worker (a task's error would)
                log.exception("web console: reading the metrics failed; trying again")
            if time.monotonic() - self.viewed_at < WATCHED_FOR:
                await asyncio.sleep(WATCHED_EVERY)
                continue
            self._viewer.clear()
            with contextlib.suppress(TimeoutError):  # a page opened: sample now
                await asyncio.wait_for(self._viewer.wait(), IDLE_EVERY)
