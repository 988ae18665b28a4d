"""``LEADSTREAMS_ALLOW_LOOPBACK=1`` reaches the worker's partner calls: a flow with no loopback
setting gets its lead through a local partner, and the worker's log warns that the switch is on."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer

from agents.kafka_io import collect, ensure_topics
from examples.support.process import WorkerProcess, free_port, serve_app

pytestmark = pytest.mark.kafka

FLOW = """
version: 1
name: loopback-switch
topics: {{input: {input}, enriched: {enriched}, errors: {errors}}}
integrations:
  partner: {{base_url: "{url}"}}
steps:
  - name: score
    integration: partner
    request: {{method: GET, url: /score}}
    map: {{score: "{{{{ response.score }}}}"}}
"""


async def test_the_switch_lets_the_worker_reach_a_local_partner(kafka_bootstrap: str, tmp_path: Path) -> None:
    async def score(request: web.Request) -> web.Response:
        return web.json_response({"score": 7})

    app = web.Application()
    app.router.add_get("/score", score)
    runner, url = await serve_app(app)
    suffix = uuid.uuid4().hex[:8]
    topics = {kind: f"loopback.{kind}.{suffix}" for kind in ("input", "enriched", "errors")}
    await ensure_topics(kafka_bootstrap, topics.values(), partitions=1)
    flow = tmp_path / "flow.yaml"
    flow.write_text(FLOW.format(url=url, **topics))
    log = tmp_path / "worker.log"
    worker = WorkerProcess(flow, kafka_bootstrap, free_port(), log, env={"LEADSTREAMS_ALLOW_LOOPBACK": "1"},
                           args=["--group-id", f"loopback-{suffix}", "--partitions", "1"])  # fmt: skip
    worker.start()
    try:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topics["input"], orjson.dumps({"id": "L1"}), key=b"L1")
        finally:
            await producer.stop()
        out = topics["enriched"], topics["errors"]
        records = await collect(kafka_bootstrap, list(out), lambda rs: len(rs) >= 1, 60)
        assert [r.topic for r in records] == [topics["enriched"]], worker.log_tail()
        event = orjson.loads(records[0].value)
        assert (event["outcome"], event["lead"]["score"]) == ("success", 7)
        assert "--allow-loopback (LEADSTREAMS_ALLOW_LOOPBACK) is on" in log.read_text()
    finally:
        worker.kill()
        await runner.cleanup()
