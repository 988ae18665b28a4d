"""A stop or a rebalance never waits for notifications held by a rate limit: running
deliveries are given back unacked (agents.inflight.LeadLoop.hand_back) and read again by
the next owner. Before, a 5/s webhook with a hundred alerts queued held a stop past its
deadline (no commit, the group not left) and a rebalance for the whole group."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import orjson
import pytest
from aiohttp import ClientSession, web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from agents.kafka_io import READ_COMMITTED
from examples.support.process import WorkerProcess, free_port, serve_app, wait_for

pytestmark = pytest.mark.kafka
LEADS = 100

FLOW = """\
version: 1
name: handover
topics: {{input: in.{s}, enriched: out.{s}, errors: err.{s}, notifications: notify.{s}}}
integrations:
  buyer: {{base_url: "{url}", allow_loopback: true}}
  slack: {{base_url: "{url}", allow_loopback: true, rate_limit: 5/s, burst: 1}}
steps:
  - name: deliver
    integration: buyer
    request: {{method: POST, url: /buy, json: {{id: "{{{{ lead.id }}}}"}}}}
  - name: alert
    integration: slack
    notify: true
    request: {{method: POST, url: /hook, json: {{id: "{{{{ lead.id }}}}"}}}}
"""


async def ready(worker: WorkerProcess, timeout: float = 60) -> None:
    """Until the worker's /ready answers 200 (it joined its group and owns partitions)."""
    deadline = time.monotonic() + timeout
    async with ClientSession() as session:
        while time.monotonic() < deadline:
            assert worker.alive, worker.log_tail()
            try:
                async with session.get(f"http://127.0.0.1:{worker.web_port}/ready") as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"the worker was not ready within {timeout}s:\n{worker.log_tail()}")


async def test_a_stop_gives_rate_limited_deliveries_back_and_commits(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    alerts: list[str] = []

    async def buyer(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def hook(request: web.Request) -> web.Response:
        alerts.append((await request.json())["id"])
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/buy", buyer)
    app.router.add_post("/hook", hook)
    runner, url = await serve_app(app)
    suffix = uuid.uuid4().hex[:8]
    flow = tmp_path / "flow.yaml"
    flow.write_text(FLOW.format(s=suffix, url=url))
    args = ["--partitions", "2", "--group-id", f"ho-{suffix}", "--instance-id", "w", "--loglevel", "info"]
    worker = WorkerProcess(flow, kafka_bootstrap, free_port(), tmp_path / "worker.log", {}, args)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    outputs = AIOKafkaConsumer(
        f"out.{suffix}",
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        isolation_level=READ_COMMITTED,
    )
    written: set[str] = set()
    try:
        worker.start()
        await producer.start()
        await ready(worker)
        for n in range(LEADS):
            lead = orjson.dumps({"id": f"L{n}"})
            await producer.send(f"in.{suffix}", lead, key=f"L{n}".encode())
        await producer.flush()
        await outputs.start()
        deadline = time.monotonic() + 60
        while len(written) < LEADS and time.monotonic() < deadline:
            for records in (await outputs.getmany(timeout_ms=500)).values():
                written.update(orjson.loads(r.value)["id"] for r in records)
        assert len(written) == LEADS, worker.log_tail()
        assert len(set(alerts)) < LEADS // 2  # most alerts still wait for the 5/s limit

        stopping = time.monotonic()
        assert worker.stop() == 0, worker.log_tail()
        took = time.monotonic() - stopping
        log = worker.log_tail(30)
        assert took < 10 and "no lead left uncommitted" in log and "without a commit" not in log, log

        worker.start()  # the alerts given back are read again from the commit
        await wait_for(lambda: len(set(alerts)) == LEADS, 60, f"{LEADS} alerts, {len(set(alerts))} so far")
    finally:
        worker.stop()
        await asyncio.gather(producer.stop(), outputs.stop(), runner.cleanup())
    assert sorted(set(alerts)) == sorted(f"L{n}" for n in range(LEADS))
