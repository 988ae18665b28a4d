"""A worker on a two-partition topic with a partner that holds chosen leads: the shared
parts of the commit tests (test_commit_on_kafka.py: at-least-once's commit rule;
test_exactly_once_on_kafka.py: transactions)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer

from agents.kafka_io import collect, committed_offsets, end_offsets, ensure_topics
from examples.support.process import WorkerProcess, free_port, serve_app

SLOW_SECONDS = 60.0  # the slow lead's first call: far longer than the test needs
FAST = 50

FLOW = """
version: 1
name: commit-rule
topics: {{input: {input}, enriched: {enriched}, errors: {errors}}}
integrations:
  partner:
    base_url: {url}
    timeout: 90s
    concurrency: 100
    allow_loopback: true
steps:
  - name: score
    integration: partner
    request: {{method: POST, url: /score, json: {{id: "{{{{ lead.id }}}}", slow: "{{{{ lead.slow }}}}"}}}}
    map: {{score: "{{{{ response.score }}}}"}}
"""


@dataclass
class SlowPartner:
    """Answers at once, except a lead with ``slow`` the first time it is asked."""

    asked: dict[str, int] = field(default_factory=dict)
    waiting: set[str] = field(default_factory=set)  # slow calls in progress
    release: asyncio.Event = field(default_factory=asyncio.Event)  # ends slow calls (teardown)

    async def score(self, request: web.Request) -> web.Response:
        body = await request.json()
        lead_id = body["id"]
        self.asked[lead_id] = self.asked.get(lead_id, 0) + 1
        if body.get("slow") and self.asked[lead_id] == 1:
            self.waiting.add(lead_id)
            try:
                # The partner taking its time (not a test wait); the fixture ends it.
                await asyncio.wait_for(self.release.wait(), SLOW_SECONDS)
            except TimeoutError:
                pass
            finally:
                self.waiting.discard(lead_id)
        return web.json_response({"score": 7})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/score", self.score)
        return app


@dataclass
class CommitRun:
    bootstrap: str
    workdir: Path
    partner: SlowPartner
    url: str
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    worker: WorkerProcess | None = None
    guarantee: str = "at-least-once"

    @property
    def topics(self) -> dict[str, str]:
        return {kind: f"commit.{kind}.{self.suffix}" for kind in ("input", "enriched", "errors")}

    @property
    def group(self) -> str:
        return f"commit-{self.suffix}"

    def new_worker(self, *extra: str, instance: int = 0) -> WorkerProcess:
        flow = self.workdir / f"flow-{self.suffix}.yaml"
        flow.write_text(FLOW.format(url=self.url, **self.topics))
        args = ["--group-id", self.group, "--instance-id", f"{self.group}-{instance}", "--partitions", "2",
                "--guarantee", self.guarantee, *extra]  # fmt: skip
        log = self.workdir / f"worker-{self.suffix}-{instance}.log"
        return WorkerProcess(flow, self.bootstrap, free_port(), log, args=args)

    async def start_worker(self, *extra: str) -> None:
        self.worker = self.new_worker(*extra)
        self.worker.start()

    async def publish(self, partition: int, leads: list[dict[str, object]]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        try:
            for lead in leads:
                value = orjson.dumps(lead)
                await producer.send_and_wait(self.topics["input"], value, key=str(lead["id"]).encode(),
                                             partition=partition)  # fmt: skip
        finally:
            await producer.stop()

    async def committed(self) -> dict[int, int]:
        offsets = await committed_offsets(self.bootstrap, self.group)
        return {partition: offset for (topic, partition), offset in offsets.items()
                if topic == self.topics["input"] and offset >= 0}  # fmt: skip

    async def wait_committed(self, partition: int, offset: int, timeout: float = 60) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while (await self.committed()).get(partition, -1) < offset:
            self.assert_alive()
            if asyncio.get_running_loop().time() > deadline:
                committed = await self.committed()
                raise TimeoutError(
                    f"partition {partition} never committed {offset}: {committed}\n{self.worker_log()}"
                )
            await asyncio.sleep(0.2)

    async def ids_out(self, at_least: int, timeout: float = 60) -> list[str]:
        """Lead ids of every output so far, once there are ``at_least``."""
        topics = [self.topics["enriched"], self.topics["errors"]]
        deadline = asyncio.get_running_loop().time() + timeout
        while (total := sum((await end_offsets(self.bootstrap, topics)).values())) < at_least:
            self.assert_alive()
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{total} of {at_least} outputs\n{self.worker_log()}")
            await asyncio.sleep(0.2)
        records = await collect(self.bootstrap, topics, lambda rs: len(rs) >= total, timeout)
        return [orjson.loads(r.value)["id"] for r in records]

    def worker_log(self) -> str:
        return self.worker.log_tail() if self.worker else "(no worker)"

    def assert_alive(self) -> None:
        assert self.worker is not None and self.worker.alive, f"worker exited:\n{self.worker_log()}"


def leads(prefix: str, count: int, slow: bool = False) -> list[dict[str, object]]:
    return [{"id": f"{prefix}-{n}", "email": f"{prefix}{n}@example.com", "slow": slow} for n in range(count)]


@asynccontextmanager
async def commit_run(kafka_bootstrap: str, tmp_path: Path, guarantee: str) -> AsyncIterator[CommitRun]:
    partner = SlowPartner()
    runner, url = await serve_app(partner.app())
    run = CommitRun(kafka_bootstrap, tmp_path, partner, url, guarantee=guarantee)
    await ensure_topics(kafka_bootstrap, run.topics.values(), partitions=2)
    try:
        yield run
    finally:
        partner.release.set()
        if run.worker is not None:
            run.worker.kill()  # stop() would block this loop, where the partner runs
        await runner.cleanup()
