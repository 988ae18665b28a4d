"""Resilience on the real broker: delayed retry topics, the fallback cache surviving a
restart, and the fault-injection scenarios of `make reliability` at a small size."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from worker_harness import free_port

from agents.kafka_io import Record, collect, publish
from examples.support.process import ROOT, WorkerProcess, serve_app

pytestmark = pytest.mark.kafka
sys.path.insert(0, str(ROOT / "examples" / "reliability"))

FLOW = """
version: 1
name: resilient
topics: {{input: {p}.in, enriched: {p}.out, errors: {p}.errors, retry: {p}.retry}}
delayed_retry: {{first: 4s, factor: 1, cap: 4s, attempts: 2}}
integrations:
  partner:
    base_url: ${{PARTNER_URL}}
    allow_loopback: true
    timeout: 2s
    retry: {{attempts: 2, backoff: 10ms, max_backoff: 50ms}}
steps:
  - name: check
    integration: partner
    request: {{method: POST, url: /check, json: {{email: "{{{{ lead.email }}}}"}}}}
    fallback: [{{cache: 1h}}]
    map: {{score: "{{{{ response.score }}}}"}}
"""


@dataclass
class Switchable:
    """A partner that answers 503 until told to recover; counts requests."""

    down: bool = True
    requests: int = 0

    def app(self) -> web.Application:
        async def check(request: web.Request) -> web.Response:
            self.requests += 1
            if self.down:
                return web.json_response({"error": "maintenance"}, status=503)
            body = await request.json()
            return web.json_response({"score": len(body["email"])})

        app = web.Application()
        app.router.add_post("/check", check)
        return app


@dataclass
class Setup:
    partner: Switchable
    prefix: str
    worker: WorkerProcess

    def topic(self, kind: str) -> str:
        return f"{self.prefix}.{kind}"


@pytest.fixture
async def setup(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[Setup]:
    partner = Switchable()
    runner, url = await serve_app(partner.app())
    prefix = f"res-{uuid.uuid4().hex[:8]}"
    flow = tmp_path / "flow.yaml"
    flow.write_text(FLOW.format(p=prefix))
    args = ["--group-id", prefix, "--partitions", "2"]
    worker = WorkerProcess(
        flow, kafka_bootstrap, free_port(), tmp_path / "worker.log", {"PARTNER_URL": url}, args
    )
    worker.start()
    try:
        yield Setup(partner, prefix, worker)
    finally:
        worker.stop()
        await runner.cleanup()


async def outputs(setup: Setup, bootstrap: str, count: int, timeout: float = 120) -> list[dict]:
    def enough(records: list[Record]) -> bool:
        assert setup.worker.alive, setup.worker.log_tail()
        return len(records) >= count

    records = await collect(bootstrap, [setup.topic("out"), setup.topic("errors")], enough, timeout)
    assert len(records) >= count, f"{len(records)} of {count}\n{setup.worker.log_tail()}"
    return [{"topic": r.topic, **orjson.loads(r.value)} for r in records]


async def test_deferred_leads_come_back_when_the_partner_recovers(setup: Setup, kafka_bootstrap: str) -> None:
    leads = [
        (f"d{i}".encode(), orjson.dumps({"id": f"d{i}", "email": f"user{i}@mail.example"})) for i in range(5)
    ]
    await publish(kafka_bootstrap, setup.topic("in"), leads)
    # Each lead is tried (2 attempts), finds no cached answer and is deferred to the 4s tier;
    # the partner recovers before they are due again.
    tier = f"{setup.prefix}.retry.4s"
    await collect(kafka_bootstrap, [tier], lambda r: len(r) >= 5, 60)
    setup.partner.down = False
    events = await outputs(setup, kafka_bootstrap, 5)
    assert sorted(e["id"] for e in events) == [f"d{i}" for i in range(5)]
    assert {e["topic"] for e in events} == {setup.topic("out")}
    assert all(e["outcome"] == "success" and e["input"]["topic"] == setup.topic("in") for e in events)


async def test_leads_give_up_after_the_last_delayed_retry(setup: Setup, kafka_bootstrap: str) -> None:
    await publish(
        kafka_bootstrap, setup.topic("in"), [(b"g1", orjson.dumps({"id": "g1", "email": "a@b.example"}))]
    )
    [event] = await outputs(setup, kafka_bootstrap, 1)
    assert event["topic"] == setup.topic("errors")
    assert event["reason"].startswith("gave up after 2 delayed retries: check: retry later: HTTP 503")
    # A 503 goes to the fallback chain at once (no inline retry): one request on the
    # first run and one on each of the 2 delayed retries.
    assert setup.partner.requests == 3


async def test_cached_answer_survives_a_worker_restart(setup: Setup, kafka_bootstrap: str) -> None:
    setup.partner.down = False
    lead = {"id": "c1", "email": "cached@mail.example"}
    await publish(kafka_bootstrap, setup.topic("in"), [(b"c1", orjson.dumps(lead))])
    [first] = await outputs(setup, kafka_bootstrap, 1)
    assert first["steps"][0]["source"] == "primary"
    assert setup.worker.stop() == 0, setup.worker.log_tail()

    setup.partner.down = True
    setup.worker.start()  # a new process: the cache comes back from the table's changelog
    await publish(kafka_bootstrap, setup.topic("in"), [(b"c2", orjson.dumps({**lead, "id": "c2"}))])
    events = await outputs(setup, kafka_bootstrap, 2)
    second = next(e for e in events if e["id"] == "c2")
    assert second["outcome"] == "success", orjson.dumps(second).decode()
    assert second["steps"][0]["source"] == "cache"
    assert second["lead"]["score"] == first["lead"]["score"]


# About 2.5 minutes here (3.5 with two CPU hogs beside it); two broker restarts take longer
# on a busy machine.
@pytest.mark.timeout(540)
async def test_reliability_scenarios_at_small_size(kafka_bootstrap: str, tmp_path: Path) -> None:
    """`make reliability` at a small size: faults + kill -9 + broker restart (at-least-once, then
    exactly-once counted by lead id), slow leads at
    the head of a partition + kill -9, a shared rate limit across two workers, the rate limit
    at the partner with two CPU hogs beside one worker and then two (`loaded`), fuzzed inputs
    over SASL_SSL, secrets (partner keys and the Kafka password). Every rate is the partner's
    busiest sliding second, counted in its own process by kernel receive time."""
    from run_reliability import Sizes, run_all

    state = os.environ.get("LEADSTREAMS_KAFKA_STATE")
    assert state, "run through `make test` (deploy/kafka/with-kafka.sh sets LEADSTREAMS_KAFKA_STATE)"
    lines, ok = await run_all(kafka_bootstrap, state, Sizes.small(), tmp_path)
    assert ok, "\n".join(lines)
    assert lines[-1].startswith("reliability: ") and " lost=0 " in lines[-1]
    # Issue 18: the worker on --guarantee exactly-once, killed once at a random moment and the
    # broker restarted; counted by lead id with a read_committed consumer (about 40 s more).
    assert any(line.startswith("exactly_once: ") and " lost=0 duplicates=0 " in line for line in lines), lines
    assert any(line.startswith("fuzz: ") and "kafka=SASL_SSL" in line for line in lines), lines
    assert any(line.startswith("loaded: hogs=2 ") and "workers=2 max_rps=" in line for line in lines), lines
    assert any(line.startswith("secrets: kinds=partner keys, Kafka password") for line in lines), lines
