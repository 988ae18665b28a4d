"""The commit never passes a lead still in flight (issue 13's two reproductions).

A slow lead sits at the head of partition 0 (of a fresh group, or mid-stream) while
the leads behind it finish. The group's committed offset must stay at the slow lead
while it waits for its partner; after ``kill -9`` and a restart it comes out exactly
once. Partition 1 gets a few fast leads afterwards: once *its* commit shows, the worker
has committed since partition 0's fast leads finished, so partition 0's commit is read
after a commit that could have passed the slow lead, not before.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer

from agents.kafka_io import collect, committed_offsets, end_offsets, ensure_topics
from examples.support.process import WorkerProcess, free_port, serve_app, wait_for

pytestmark = pytest.mark.kafka

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

    @property
    def topics(self) -> dict[str, str]:
        return {kind: f"commit.{kind}.{self.suffix}" for kind in ("input", "enriched", "errors")}

    @property
    def group(self) -> str:
        return f"commit-{self.suffix}"

    async def start_worker(self) -> None:
        flow = self.workdir / f"flow-{self.suffix}.yaml"
        flow.write_text(FLOW.format(url=self.url, **self.topics))
        args = ["--group-id", self.group, "--instance-id", f"{self.group}-0", "--partitions", "2"]
        log = self.workdir / f"worker-{self.suffix}.log"
        self.worker = WorkerProcess(flow, self.bootstrap, free_port(), log, args=args)
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


@pytest.fixture
async def run(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[CommitRun]:
    partner = SlowPartner()
    runner, url = await serve_app(partner.app())
    commit_run = CommitRun(kafka_bootstrap, tmp_path, partner, url)
    await ensure_topics(kafka_bootstrap, commit_run.topics.values(), partitions=2)
    try:
        yield commit_run
    finally:
        partner.release.set()
        if commit_run.worker is not None:
            commit_run.worker.kill()  # stop() would block this loop, where the partner runs
        await runner.cleanup()


def leads(prefix: str, count: int, slow: bool = False) -> list[dict[str, object]]:
    return [{"id": f"{prefix}-{n}", "email": f"{prefix}{n}@example.com", "slow": slow} for n in range(count)]


async def hold_slow_lead_then_kill(run: CommitRun, slow_offset: int) -> None:
    """The slow lead (at ``slow_offset`` of partition 0) is in flight and the leads
    behind it are out: the commit must not pass it; then kill -9 and restart; it comes
    out exactly once."""
    await wait_for(lambda: "slow-0" in run.partner.waiting, 60, "the slow lead at the partner")
    before = slow_offset  # outputs of leads before the slow one (mid-stream case)
    out = await run.ids_out(before + FAST)
    assert sum(lead_id.startswith("fast-") for lead_id in out) >= FAST

    await run.publish(1, leads("other", 5))  # a commit after partition 0's fast leads finished
    await run.wait_committed(1, 5)
    assert run.partner.waiting == {"slow-0"}, "the slow lead must still be in flight"
    committed = (await run.committed()).get(0)
    assert committed is None or committed <= slow_offset, (
        f"partition 0 committed {committed} while the lead at offset {slow_offset} is in flight"
    )

    assert run.worker is not None
    run.worker.kill()
    restarted = time.monotonic()
    run.worker.start()  # same instance id: it takes its partitions back at once
    await run.wait_committed(0, slow_offset + 1 + FAST, timeout=90)  # the slow lead finished
    # Static membership: not the 45 s session timeout a new member would wait for.
    assert time.monotonic() - restarted < 30, "the restarted worker waited for the session timeout"
    out = await run.ids_out(before + FAST + 5 + 1)
    assert out.count("slow-0") == 1, f"the slow lead came out {out.count('slow-0')} times"
    assert run.partner.asked["slow-0"] == 2  # asked again after the restart, answered at once


async def test_commit_stops_at_a_slow_lead_at_the_head_of_a_fresh_partition(run: CommitRun) -> None:
    await run.publish(0, leads("slow", 1, slow=True) + leads("fast", FAST))
    await run.start_worker()
    await hold_slow_lead_then_kill(run, slow_offset=0)


async def test_commit_stops_at_a_slow_lead_mid_stream(run: CommitRun) -> None:
    await run.publish(0, leads("early", FAST))
    await run.start_worker()
    await run.wait_committed(0, FAST)
    await run.publish(0, leads("slow", 1, slow=True) + leads("fast", FAST))
    await hold_slow_lead_then_kill(run, slow_offset=FAST)
