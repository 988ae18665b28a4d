"""Exactly-once on the broker: outputs and their inputs' offsets commit together or not at all.

* A crash between the produce and the commit: the worker's commit is held off (a long
  ``--commit-interval``) while its outputs sit in the open transaction, then ``kill -9``.
  The outputs are on the topic but invisible to ``read_committed``; after a restart every
  lead is there exactly once.
* A zombie: a worker paused (SIGSTOP) past its session timeout is replaced in the group; a
  second worker processes and commits the same leads. When the first one wakes up with its
  open transaction, the group refuses its commit (KIP-447: the generation it was assigned
  with is stale) and it exits, aborting its transaction: still every lead exactly once.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from commit_run import FAST, CommitRun, commit_run, leads

from agents.kafka_io import collect, end_offsets, partition_counts
from examples.support.process import wait_for

pytestmark = pytest.mark.kafka

HELD_COMMITS = ["--commit-interval", "3600", "--commit-count", "1000000"]  # outputs stay uncommitted
EXIT_TRANSACTION_FAILED = 70


@pytest.fixture
async def run(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[CommitRun]:
    async with commit_run(kafka_bootstrap, tmp_path, "exactly-once") as started:
        yield started


def output_topics(run: CommitRun) -> list[str]:
    return [run.topics["enriched"], run.topics["errors"]]


async def written(run: CommitRun) -> int:
    """Records on the output topics, committed or not (the high watermarks, before any
    transaction marker was written)."""
    return sum((await end_offsets(run.bootstrap, output_topics(run), stable=False)).values())


async def every_record(run: CommitRun, count: int) -> list[str]:
    """Lead ids of the outputs read read_uncommitted (aborted transactions' records too)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=run.bootstrap, enable_auto_commit=False,
                                isolation_level="read_uncommitted")  # fmt: skip
    await consumer.start()
    try:
        counts = await partition_counts(run.bootstrap, output_topics(run))
        parts = [TopicPartition(topic, p) for topic, count in counts.items() for p in range(count)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ids: list[str] = []
        deadline = time.monotonic() + 30
        while len(ids) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            ids += [orjson.loads(r.value)["id"] for records in batch.values() for r in records]
        return ids
    finally:
        await consumer.stop()


async def committed_ids(run: CommitRun, count: int, timeout: float = 60) -> list[str]:
    records = await collect(run.bootstrap, output_topics(run), lambda rs: len(rs) >= count, timeout)
    return [orjson.loads(r.value)["id"] for r in records]


def assert_each_once(ids: list[str], expected: set[str]) -> None:
    counts = Counter(ids)
    twice = sorted(lead for lead, n in counts.items() if n > 1)
    assert not twice, f"written twice (read_committed): {twice[:10]}"
    assert set(counts) == expected, f"missing: {sorted(expected - set(counts))[:10]}"


async def test_a_crash_between_produce_and_commit_leaves_no_trace(run: CommitRun) -> None:
    expected = {f"a-{n}" for n in range(40)} | {f"b-{n}" for n in range(10)}
    await run.publish(0, leads("a", 40))
    await run.publish(1, leads("b", 10))
    await run.start_worker(*HELD_COMMITS)
    await wait_for_async(lambda: written(run), 50, "the outputs in the open transaction")

    assert sum((await end_offsets(run.bootstrap, output_topics(run))).values()) == 0, (
        "an open transaction's outputs must not be readable read_committed"
    )
    assert await run.committed() == {}, "no offset may commit before its transaction"

    assert run.worker is not None
    run.worker.kill()  # between the produce and the commit
    restarted = time.monotonic()
    run.worker = run.new_worker()  # the same instance id: its start aborts the open transaction
    run.worker.start()
    await run.wait_committed(0, 40)
    await run.wait_committed(1, 10)
    ids = await committed_ids(run, len(expected))
    visible_after = time.monotonic() - restarted
    assert_each_once(ids, expected)
    every = await every_record(run, 2 * len(expected))
    assert len(every) == 2 * len(expected), "the aborted outputs are on the topic, unread by read_committed"
    # Not the 30 s transaction timeout: the restart with the same id aborted it at once.
    assert visible_after < 25, f"outputs visible {visible_after:.1f}s after the restart"
    url = f"http://127.0.0.1:{run.worker.web_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        metrics = await answer.text()
    counted = r'^leadstreams_transaction_commit_seconds_count\{flow="commit-rule"\} (\S+)'
    commits = re.search(counted, metrics, re.M)
    assert commits and float(commits.group(1)) >= 1, "the commits are counted"


async def test_a_replaced_worker_commits_nothing(run: CommitRun) -> None:
    expected = {f"a-{n}" for n in range(10)} | {f"b-{n}" for n in range(10)}
    await run.publish(0, leads("a", 10))
    await run.publish(1, leads("b", 10))
    zombie = run.new_worker(*HELD_COMMITS, "--session-timeout", "6", instance=0)
    zombie.start()
    run.worker = zombie  # killed by the fixture if the test fails
    await wait_for_async(lambda: written(run), 20, "the first worker's outputs in its open transaction")
    assert zombie.process is not None
    os.kill(zombie.process.pid, signal.SIGSTOP)  # a pause longer than its session
    try:
        successor = run.new_worker("--session-timeout", "6", instance=1)
        successor.start()
        await run.wait_committed(0, 10, timeout=90)  # the successor owns both partitions now
        await run.wait_committed(1, 10, timeout=30)
    finally:
        os.kill(zombie.process.pid, signal.SIGCONT)
    await wait_for(lambda: not zombie.alive, 60, "the replaced worker to exit")
    assert zombie.process.returncode == EXIT_TRANSACTION_FAILED, zombie.log_tail()
    log = zombie.log_tail(200)
    assert "exactly-once" in log and "aborting the open transaction" in log, log
    run.worker = successor
    assert_each_once(await committed_ids(run, len(expected)), expected)
    assert len(await every_record(run, 2 * len(expected))) == 2 * len(expected)
    assert (await run.committed()) == {0: 10, 1: 10}


async def wait_for_async(
    count: Callable[[], Awaitable[int]], at_least: int, what: str, timeout: float = 60
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (now := await count()) < at_least:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{what}: {now} of {at_least}")
        await asyncio.sleep(0.2)


async def test_workers_joining_and_leaving_write_each_lead_once(run: CommitRun) -> None:
    """Rebalances while leads flow: a second worker joins, then the first stops (its last
    commit must be what the next owner reads, not the one before)."""
    published: list[str] = []

    async def publish_steadily() -> None:
        for wave in range(60):
            batch = leads(f"w{wave}", 10)
            await run.publish(wave % 2, batch)
            published.extend(str(lead["id"]) for lead in batch)
            await asyncio.sleep(0.1)  # the pace of the publisher, not a synchronisation

    # A static member that stops keeps its partitions until its session ends.
    first = run.new_worker("--session-timeout", "6", instance=0)
    first.start()
    run.worker = first
    publishing = asyncio.ensure_future(publish_steadily())
    await wait_for(lambda: len(published) >= 150, 30, "the first leads published")
    second = run.new_worker("--session-timeout", "6", instance=1)
    second.start()
    await wait_for(lambda: len(published) >= 350, 30, "more leads published")
    assert await asyncio.to_thread(first.stop) == 0, first.log_tail()
    run.worker = second
    await publishing
    await run.wait_committed(0, 300, timeout=90)
    await run.wait_committed(1, 300, timeout=30)
    assert_each_once(await committed_ids(run, len(published)), set(published))


async def test_kill_9_with_a_slow_lead_at_the_head_writes_each_lead_once(run: CommitRun) -> None:
    """The worst moment of at-least-once's commit test, under exactly-once: a slow lead at
    the head of partition 0 with 50 leads behind it finished. Their outputs wait for it (in
    input order), nothing of partition 0 commits; after kill -9 and a restart every lead
    comes out exactly once."""
    expected = {"slow-0"} | {f"fast-{n}" for n in range(FAST)} | {f"other-{n}" for n in range(5)}
    await run.publish(0, leads("slow", 1, slow=True) + leads("fast", FAST))
    await run.start_worker()
    await wait_for(lambda: "slow-0" in run.partner.waiting, 60, "the slow lead at the partner")
    await wait_for(lambda: len(run.partner.asked) >= 1 + FAST, 30, "the leads behind it at the partner")
    await run.publish(1, leads("other", 5))  # a commit after partition 0's fast leads finished
    await run.wait_committed(1, 5)
    assert run.partner.waiting == {"slow-0"}, "the slow lead must still be in flight"
    assert (await run.committed()).get(0) is None, "partition 0 committed past the slow lead"
    assert sorted(await committed_ids(run, 5)) == sorted(f"other-{n}" for n in range(5))

    assert run.worker is not None
    run.worker.kill()
    run.worker = run.new_worker()
    run.worker.start()
    await run.wait_committed(0, 1 + FAST, timeout=90)
    assert_each_once(await committed_ids(run, len(expected)), expected)
    assert run.partner.asked["slow-0"] == 2  # asked again after the restart, answered at once
