"""Batch steps on the real broker, with the example flow `batch-submission.yaml`: windows
closed by count and by time, and no lead lost when the worker is killed mid-window or
while its batch request is in flight."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from batch_buyer import BATCHES, BUYER_TOKEN, create_batch_buyer_app
from worker_harness import free_port

from agents.kafka_io import Record, collect, ensure_topics, publish
from examples.support.process import ROOT, WorkerProcess, serve_app, wait_for

pytestmark = pytest.mark.kafka
AFTER_KILL = 120  # seconds: the rejoin (static membership) and the replay
EXAMPLE = ROOT / "examples" / "flows" / "batch-submission.yaml"


@dataclass
class BatchRun:
    bootstrap: str
    workdir: Path
    partner: web.Application
    partner_url: str
    window: str
    prefix: str = ""
    worker: WorkerProcess | None = None

    def __post_init__(self) -> None:
        self.prefix = f"batch-{uuid.uuid4().hex[:8]}"

    def topic(self, kind: str) -> str:
        return f"{self.prefix}.{kind}"

    @property
    def batches(self) -> list[tuple[str, list[str]]]:
        return self.partner[BATCHES]

    def flow_file(self) -> Path:
        text = EXAMPLE.read_text().replace("leads.batch.", f"{self.prefix}.")
        text = text.replace("window: 5m", f"window: {self.window}").replace(
            "rate_limit: 5/s", "rate_limit: 50/s"
        )
        path = self.workdir / "flow.yaml"
        path.write_text(text)
        return path

    def start(self) -> None:
        self.worker = self.new_worker("worker")
        self.worker.start()

    def new_worker(self, name: str) -> WorkerProcess:
        env = {"BUYER_TOKEN": BUYER_TOKEN, "PARTNER_URL": self.partner_url, "PARTNER_ALLOW_LOOPBACK": "true"}
        # A stable instance id per name: a restart after kill -9 takes the partition back at once.
        args = ["--group-id", self.prefix, "--instance-id", f"{self.prefix}-{name}", "--partitions", "1"]
        log = self.workdir / f"{name}.log"
        return WorkerProcess(self.flow_file(), self.bootstrap, free_port(), log, env, args)

    async def publish(self, ids: list[str], partitions: int = 1) -> None:
        topics = [self.topic(k) for k in ("in", "out", "errors")]
        await ensure_topics(self.bootstrap, topics, partitions=partitions)
        messages = (
            (i.encode(), orjson.dumps({"id": i, "email": email_for(i), "phone": "555 0100"})) for i in ids
        )
        await publish(self.bootstrap, self.topic("in"), messages)

    async def outputs(self, count: int, timeout: float = 120, ids: set[str] | None = None) -> list[Record]:
        """At least ``count`` outputs (and, if given, one of each of ``ids``: replays after a
        kill can make the count before the last window's outputs are written)."""

        def enough(records: list[Record]) -> bool:
            assert self.worker is not None and self.worker.alive, self.worker and self.worker.log_tail()
            if ids is not None and not ids <= {orjson.loads(r.value)["id"] for r in records}:
                return False
            return len(records) >= count

        records = await collect(self.bootstrap, [self.topic("out"), self.topic("errors")], enough, timeout)
        assert len(records) >= count, f"{len(records)} of {count}"
        missing = ids - {orjson.loads(r.value)["id"] for r in records} if ids else set()
        assert not missing, f"a lead was lost: {sorted(missing)}"
        return records


def email_for(lead_id: str) -> str:
    return f"{lead_id}@spam.example" if lead_id.endswith("7") else f"{lead_id}@mail.example"


def lead_ids(prefix: str, count: int, start: int = 0) -> list[str]:
    """Every 100th lead is one the buyer leaves out of its answer."""
    return [f"{prefix}-{i:04d}" + ("-nores" if i % 100 == 50 else "") for i in range(start, start + count)]


@pytest.fixture
async def batch_run(
    kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[BatchRun]:
    partner = create_batch_buyer_app()
    hold = getattr(request, "param", None)
    if hold is not None:
        partner.middlewares.append(hold)
    runner, url = await serve_app(partner)
    run = BatchRun(kafka_bootstrap, tmp_path, partner, url, window="2s")
    try:
        yield run
    finally:
        if run.worker is not None:
            run.worker.stop()
        await runner.cleanup()


async def test_a_thousand_leads_make_ten_batches_and_a_thousand_results(batch_run: BatchRun) -> None:
    ids = lead_ids(batch_run.prefix, 1000)
    await batch_run.publish(ids)
    batch_run.start()
    records = await batch_run.outputs(1000)

    assert len(batch_run.batches) == 10
    assert [len(members) for _, members in batch_run.batches] == [100] * 10
    assert sorted(i for _, members in batch_run.batches for i in members) == sorted(ids)
    batch_of = {i: batch_id for batch_id, members in batch_run.batches for i in members}

    events = [orjson.loads(r.value) for r in records]
    assert sorted(e["id"] for e in events) == sorted(ids)  # each lead exactly once
    for record, event in zip(records, events, strict=True):
        step = event["steps"][0]
        if event["id"].endswith("-nores"):
            assert (record.topic, event["reason"]) == (
                batch_run.topic("errors"),
                "submit_batch: no result in batch response",
            )
        elif event["id"].endswith("7"):
            assert (event["outcome"], event["reason"]) == ("failure", "submit_batch: blacklisted domain")
        else:
            assert (event["outcome"], step["reference"], step["price"]) == (
                "success",
                f"BB-{event['id']}",
                12.5,
            )
            assert event["lead"]["buyer_batch"] == batch_of[event["id"]]


async def test_a_slow_trickle_closes_windows_by_time(batch_run: BatchRun) -> None:
    batch_run.start()
    first = lead_ids(batch_run.prefix, 3)
    await batch_run.publish(first)
    await wait_for(lambda: len(batch_run.batches) >= 1, 60, "the first window to close by time")
    second = lead_ids(batch_run.prefix, 2, start=3)
    await batch_run.publish(second)
    records = await batch_run.outputs(5)
    assert [members for _, members in batch_run.batches] == [first, second]
    assert sorted(orjson.loads(r.value)["id"] for r in records) == sorted(first + second)


async def test_killing_the_worker_mid_window_loses_no_lead(batch_run: BatchRun) -> None:
    batch_run.window = "10s"
    ids = lead_ids(batch_run.prefix, 150)
    await batch_run.publish(ids)
    batch_run.start()
    await batch_run.outputs(100)  # the first window was full; the second waits for its time
    assert len(batch_run.batches) == 1, "the second window closed before the kill: no mid-window kill"
    assert batch_run.worker is not None
    batch_run.worker.kill()

    # Same group and instance id: reads again from the last committed offset at once.
    batch_run.start()
    rebuilt = lambda: any(ids[-1] in members for _, members in batch_run.batches)  # noqa: E731
    await wait_for(rebuilt, AFTER_KILL, "the rebuilt window")
    records = await batch_run.outputs(150, AFTER_KILL, ids=set(ids))
    seen = Counter(orjson.loads(r.value)["id"] for r in records)
    assert set(seen) == set(ids), "a lead was lost"
    assert max(seen.values()) <= 2, "a lead was written more than once more"
    assert [len(members) for _, members in batch_run.batches][-1] >= 50


RELEASE = asyncio.Event()


@web.middleware
async def hold_first_batch(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """The first batch is received (and recorded) but not answered until released."""
    response = await handler(request)
    if len(request.app[BATCHES]) == 1:
        await RELEASE.wait()
    return response


@pytest.mark.parametrize("batch_run", [hold_first_batch], indirect=True)
async def test_a_batch_killed_in_flight_is_sent_again_with_the_same_id(batch_run: BatchRun) -> None:
    RELEASE.clear()
    ids = lead_ids(batch_run.prefix, 100)
    await batch_run.publish(ids)
    batch_run.start()
    await wait_for(lambda: len(batch_run.batches) == 1, 60, "the batch request")
    assert batch_run.worker is not None
    batch_run.worker.kill()  # the request is in flight: nothing was written or committed
    RELEASE.set()

    batch_run.start()
    records = await batch_run.outputs(100, AFTER_KILL)
    (first_id, first_members), (again_id, again_members) = batch_run.batches
    assert (again_id, again_members) == (first_id, first_members)
    assert Counter(orjson.loads(r.value)["id"] for r in records) == Counter(ids)  # exactly once


async def fetched_leads(worker: WorkerProcess) -> float:
    """Leads the worker took from Kafka so far (its fetch-size histogram's sum)."""
    url = f"http://127.0.0.1:{worker.web_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("leadstreams_batch_size_sum{") and 'kind="fetch"' in line
    )


async def test_a_stopped_worker_sends_its_open_window_before_it_exits(batch_run: BatchRun) -> None:
    batch_run.window = "10m"  # only the stop can close it
    ids = lead_ids(batch_run.prefix, 40)
    await batch_run.publish(ids)
    batch_run.start()
    assert batch_run.worker is not None
    await wait_until_taken(batch_run.worker, 40)
    assert batch_run.batches == []

    exit_code = await asyncio.to_thread(batch_run.worker.stop)  # SIGTERM; the partner keeps serving
    assert exit_code == 0, batch_run.worker.log_tail()
    assert [sorted(members) for _, members in batch_run.batches] == [sorted(ids)]
    records = await collect(batch_run.bootstrap, [batch_run.topic("out"), batch_run.topic("errors")],
                            lambda rs: len(rs) >= 40, 30)  # fmt: skip
    assert Counter(orjson.loads(r.value)["id"] for r in records) == Counter(ids)


async def wait_until_taken(worker: WorkerProcess, count: int, timeout: float = 120) -> None:
    """Until the worker has taken ``count`` leads from Kafka (polled, with a deadline)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            if await fetched_leads(worker) >= count:
                return
        except aiohttp.ClientError:  # web server not up yet
            pass
        assert asyncio.get_running_loop().time() < deadline, worker.log_tail()
        await asyncio.sleep(0.2)


async def test_a_rebalance_sends_the_open_windows_and_hands_over_clean(batch_run: BatchRun) -> None:
    batch_run.window = "10m"  # only the rebalance can close these windows
    ids = lead_ids(batch_run.prefix, 40)
    await batch_run.publish(ids, partitions=2)
    batch_run.start()
    assert batch_run.worker is not None
    await wait_until_taken(batch_run.worker, 40)
    assert batch_run.batches == []

    second = batch_run.new_worker("second")
    second.start()  # joins the group: the first worker's partitions are revoked
    try:
        await wait_for(lambda: sum(len(m) for _, m in batch_run.batches) >= 40, 120, "the flushed windows")
        records = await batch_run.outputs(40)
    finally:
        await asyncio.to_thread(second.stop)
    assert sorted(i for _, members in batch_run.batches for i in members) == sorted(ids)  # sent once
    assert Counter(orjson.loads(r.value)["id"] for r in records) == Counter(ids)  # written once
