"""The web console on a worker's web server: its backend (the running flows, their live
numbers, the recent problems), the sampling task behind the live numbers, and the routes."""

from __future__ import annotations

import asyncio
import os

from prometheus_client import CollectorRegistry

from agents.faust_seam import LeadApp, add_routes
from agents.flow_set import FlowSet
from agents.web_console.backends import Loaded, WorkerBackend, masked_problems
from agents.web_console.routes import ConsoleRoutes
from agents.web_console.token import ConsoleToken
from streams.live_stats import LiveStats
from streams.recent_problems import RecentProblems

SAMPLE_EVERY = 2.0  # seconds: the page's refresh


def add_console(
    app: LeadApp,
    flows: FlowSet,
    registry: CollectorRegistry,
    problems: RecentProblems,
    token: ConsoleToken,
    test_console: bool,
) -> None:
    live = LiveStats(registry)

    def running() -> Loaded:
        workers = flows.running()
        paths = {worker.path for worker in workers}
        rejected = {path: masked_problems(path, [str(p) for p in found], os.environ)
                    for path, found in flows.problems.items() if path not in paths}  # fmt: skip
        return Loaded({worker.path: worker.flow for worker in workers}, rejected)

    backend = WorkerBackend(running, live, problems, os.environ, test_console)
    add_routes(app, ConsoleRoutes(backend, token).routes())

    @app.task
    async def sample_live_numbers() -> None:
        """The page's numbers: the registry read every 2 s (the first before any lead), in a
        thread: a registry of many flows takes ~0.1 s to collect (streams.live_stats)."""
        while True:
            await asyncio.to_thread(live.sample)
            await asyncio.sleep(SAMPLE_EVERY)
