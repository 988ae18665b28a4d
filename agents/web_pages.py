"""The worker's web pages (/healthz, /ready, /metrics, /flows on Faust's web server) and the
tasks that keep what they show current: the loop watchdog and the broker probe."""

from __future__ import annotations

import faust
from prometheus_client import CollectorRegistry, generate_latest

from agents.faust_seam import LeadApp, aiokafka_producer
from agents.flow_set import REJECTED, FlowSet
from agents.health import LoopWatchdog
from agents.readiness import Readiness


def add_web_pages(
    app: LeadApp, flow_name: str, readiness: Readiness, watchdog: LoopWatchdog, registry: CollectorRegistry
) -> None:
    @app.task
    async def probe_broker() -> None:
        """A metadata request over the producer's connection every few seconds (/ready)."""
        await readiness.probe_forever(lambda: aiokafka_producer(app.producer).client.fetch_all_metadata())

    @app.task
    async def watch_the_loop() -> None:
        """The loop beats; a thread notices when it stops beating (/healthz, agents.health)."""
        watchdog.start()
        try:
            await watchdog.beat_forever()
        finally:
            watchdog.stop()

    @app.page("/healthz")
    async def health_page(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
        """Liveness: the worker's event loop answers, and was not blocked lately (agents.health)."""
        return probe_answer(web, flow_name, watchdog.reasons(), "ok", "unhealthy")

    @app.page("/ready")
    async def ready_page(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
        """Readiness: assigned, producer connected, a fetch answered lately (agents.readiness)."""
        return probe_answer(web, flow_name, readiness.reasons(), "ready", "not ready")

    @app.page("/metrics")
    async def metrics_page(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
        return web.bytes(generate_latest(registry), content_type="text/plain")


def probe_answer(
    web: faust.web.Web, flow_name: str, reasons: list[str], fine: str, failing: str
) -> faust.web.Response:
    """A probe's answer: 200 and ``fine``, or 503, ``failing`` and the reasons."""
    if reasons:
        return web.json({"status": failing, "flow": flow_name, "reasons": reasons}, status=503)
    return web.json({"status": fine, "flow": flow_name})


def add_flow_pages(app: LeadApp, flows: FlowSet) -> None:
    """``GET /flows``: every flow, its version and state, and the files rejected with their
    problems; ``POST /flows/reload``: rescan the flow files now, answer what changed."""

    @app.page("/flows")
    async def flows_page(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
        return web.json(flows.describe())

    class Reload(faust.web.View):
        async def post(self, request: faust.web.Request) -> faust.web.Response:
            changes = await flows.reload("POST /flows/reload")
            rejected = any(change.result == REJECTED for change in changes)
            return self.json({"changes": [change.as_json() for change in changes], **flows.describe()},
                             status=422 if rejected else 200)  # fmt: skip

    app.page("/flows/reload")(Reload)
