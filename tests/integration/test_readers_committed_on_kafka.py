"""Our own readers see committed records only (issue 18 item 4): a topic written as the
exactly-once worker writes it (transactions, one aborted: a crashed worker's outputs that
the next owner wrote again) reads the same in `tail`, `trace`, `status`, kafka_io's
collect (the demo and `make reliability`), the reliability run's "all committed" check
and the bench's output counter: each lead once, and every read to the end ends, though
the last offset of each partition is a commit marker no record is fetched at."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.group_status import group_status
from agents.kafka_connection import KafkaConnection
from agents.kafka_io import collect, end_offsets, ensure_topics
from agents.topic_reader import Start, TopicReader
from examples.bench.kafka_tools import OutputCounter

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "examples" / "reliability"))  # (appended: its module names shadow nothing)
START = int(time.time() * 1000) - 60_000  # the records' times, 1 ms apart in the order written
# Each partition: a committed record, then the other transactions' records and markers.
# p0: c1@0 M@1 c3@2 M@3 c5(aborted)@4 M@5 c5@6 M@7; p1 the same with c2, c4, c6.
COMMITTED = ["c1", "c2", "c3", "c4", "c5", "c6"]
LAST_RECORD = 6  # of each partition; its end is 8


def event(lead_id: str) -> bytes:
    return orjson.dumps({
        "id": lead_id, "flow": "eos", "outcome": "success", "reason": None, "lead": {"id": lead_id},
        "steps": [{"name": "check", "outcome": "success"}],
        "input": {"topic": "in", "partition": 0, "offset": 0},
    })  # fmt: skip


async def write_in_transactions(bootstrap: str, topic: str) -> None:
    """Two committed transactions, one aborted (c5 and c6: the worker "crashed"), and the
    next owner's committed one with c5 and c6 again."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-writer")
    await producer.start()
    try:
        stamp = iter(range(START, START + 100))
        for pair, commit in ((("c1", "c2"), True), (("c3", "c4"), True), (("c5", "c6"), False),
                             (("c5", "c6"), True)):  # fmt: skip
            await producer.begin_transaction()
            for partition, lead_id in enumerate(pair):
                await producer.send_and_wait(topic, event(lead_id), key=lead_id.encode(), partition=partition,
                                             timestamp_ms=next(stamp))  # fmt: skip
            await (producer.commit_transaction() if commit else producer.abort_transaction())
    finally:
        await producer.stop()


def leadstreams(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args], capture_output=True, text=True, timeout=30, cwd=ROOT
    )


def ids(lines: str) -> list[str]:
    return [orjson.loads(line)["id"] for line in lines.splitlines()]


async def test_readers_show_committed_records_once_and_stop_at_the_markers(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    s = uuid.uuid4().hex[:8]
    topics = {"in": f"eos-{s}.in", "out": f"eos-{s}.out", "err": f"eos-{s}.err"}
    await ensure_topics(kafka_bootstrap, list(topics.values()), partitions=2)
    out = topics["out"]
    await write_in_transactions(kafka_bootstrap, out)
    ends = await end_offsets(kafka_bootstrap, [out])
    assert ends == {(out, 0): 8, (out, 1): 8}  # 3 committed records, 1 aborted, 4 markers

    # tail: all, and the last 4 by time (read over the markers and the aborted records)
    tail = leadstreams("tail", out, "--bootstrap", kafka_bootstrap)
    assert tail.returncode == 0, tail.stderr
    assert sorted(ids(tail.stdout)) == COMMITTED and "6 message(s)" in tail.stderr
    last = leadstreams("tail", out, "-n", "4", "--bootstrap", kafka_bootstrap)
    assert ids(last.stdout) == ["c3", "c4", "c5", "c6"], last.stdout + last.stderr

    # trace: the lead written twice (once aborted) has one output
    flow = tmp_path / "flow.yaml"
    flow.write_text(f"version: 1\nname: eos\ntopics:\n  input: {topics['in']}\n  enriched: {out}\n"
                    f"  errors: {topics['err']}\n")  # fmt: skip
    traced = leadstreams(
        "trace", "c5", str(flow), "--since", "beginning", "--json", "--bootstrap", kafka_bootstrap
    )
    assert traced.returncode == 0, traced.stderr
    assert [
        (f["topic"], f["partition"], f["offset"]) for f in map(orjson.loads, traced.stdout.splitlines())
    ] == [(out, 0, LAST_RECORD)]

    # collect (demo, reliability): the records once; the positions reach the ends
    positions: dict[tuple[str, int], int] = {}
    read = await collect(kafka_bootstrap, [out], lambda _: positions == ends, timeout=10, positions=positions)
    assert sorted(orjson.loads(r.value)["id"] for r in read) == COMMITTED and positions == ends

    # make reliability: the group committed each partition's last record + 1 (as the worker
    # does) is all committed, though its offset stays before the commit marker
    from lead_tally import all_committed

    group = f"eos-{s}"
    run = SimpleNamespace(kafka=kafka_bootstrap, topics=[out], consumed={out}, prefix=group)
    await commit(
        kafka_bootstrap, group, {TopicPartition(out, 0): LAST_RECORD + 1, TopicPartition(out, 1): LAST_RECORD}
    )
    assert not await all_committed(run)  # c6 is not processed
    await commit(kafka_bootstrap, group, {TopicPartition(out, 1): LAST_RECORD + 1})
    assert await all_committed(run)

    # status: lag 0 (not the markers'), the last output is the last committed record
    status = await asyncio.wait_for(
        group_status(KafkaConnection.of(kafka_bootstrap), group, [out], [out]), 10
    )
    assert [(p.partition, p.end, p.lag) for p in status.positions] == [(0, 8, 0), (1, 8, 0)]
    assert [(o.partition, o.offset, o.id) for o in status.outputs] == [
        (0, LAST_RECORD, "c5"),
        (1, LAST_RECORD, "c6"),
    ]

    # the bench's counter: the committed records, and the first and last of their times
    async with OutputCounter(kafka_bootstrap, [out]) as counter:
        assert await asyncio.wait_for(counter.wait_for(6, 10, lambda: True), 10) == 6
        assert await counter.count() == 6
        assert await asyncio.wait_for(counter.edge_timestamps(), 10) == (START, START + 7)

    # a transaction still open: reads end at the last stable offset, without its record
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{out}-open")
    await producer.start()
    try:
        await producer.begin_transaction()
        await producer.send_and_wait(out, event("c7"), partition=0)
        async with TopicReader(kafka_bootstrap, [out]) as reader:
            seen = [r async for r in reader.to_end(await reader.offsets_at(Start("beginning")))]
        assert sorted(orjson.loads(r.value or b"")["id"] for r in seen) == COMMITTED
        await producer.abort_transaction()
    finally:
        await producer.stop()


async def commit(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit ``offsets`` for ``group`` (not joined: a standalone commit)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))  # (assigned by hand: a commit without joining the group)
        await consumer.commit(offsets)
    finally:
        await consumer.stop()
