"""The fallback cache's bound on a real broker: the worker's table adapter (agents.table_cache)
on a real Faust GlobalTable in this process, written with many distinct requests.

    deploy/kafka/with-kafka.sh .venv/bin/python examples/cache_bound/cache_bound.py [--requests N]

Faust runs here as in a worker (producer, consumer, table recovery from the changelog), only
without agents: no partner and no leads are needed to fill the cache, so the run measures the
cache alone. It prints the entries held, the process RSS before and after, the changelog's
records before and after the broker compacted it, and what a restart replays.
tests/integration/test_cache_on_kafka.py runs the same code at a small size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import faust
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agents.kafka_io import admin_client, collect, end_offsets  # noqa: E402
from agents.table_cache import TableCache  # noqa: E402
from streams.cache import CachedResponse, request_fingerprint  # noqa: E402
from streams.cache_index import CacheLimit, CacheObserver, CachePolicy  # noqa: E402

TABLE = "response-cache"  # as agents/app.py names it
INTEGRATION = "partner"
# Only for measuring: roll segments fast so the log cleaner gets to them within the run. The
# worker's changelog takes the broker's defaults (a segment is cleaned once it is closed).
FAST_COMPACTION = {
    "segment.ms": "2000",
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "1000",
}


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


@dataclass
class CacheRun:
    app: faust.App
    table: faust.GlobalTable
    cache: TableCache

    @property
    def changelog(self) -> str:
        return str(self.table.changelog_topic.get_topic_name())


@contextlib.asynccontextmanager
async def cache_app(
    bootstrap: str,
    app_id: str,
    policy: CachePolicy,
    clock: Callable[[], float] = time.time,
    observer: CacheObserver | None = None,
    topic_configs: dict[str, str] | None = None,
) -> AsyncIterator[CacheRun]:
    """A started Faust app holding the cache table as agents/app.py builds it, recovered from
    its changelog; stopped on exit (pending changelog writes flushed first)."""
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        datadir=str(Path(tempfile.gettempdir()) / f"{app_id}-data"),
        topic_replication_factor=1,
    )
    table = app.GlobalTable(
        TABLE,
        key_type=bytes,
        value_type=bytes,
        partitions=1,
        use_partitioner=True,
        extra_topic_configs=topic_configs or {},
    )
    cache = TableCache(table, policy, observer=observer, clock=clock)
    await app.start()
    try:
        await asyncio.wait_for(app.tables.recovery.completed.wait(), 60)
        yield CacheRun(app, table, cache)
    finally:
        await app.producer.flush()
        await app.stop()


def response(stored_at: float, body_size: int, i: int) -> CachedResponse:
    body = b'{"lead": %d, "score": 7, "pad": "%s"}' % (i, b"x" * max(0, body_size - 40))
    return CachedResponse(200, {"content-type": "application/json"}, body, stored_at)


@dataclass
class Fill:
    requests: int = 0
    most_entries: int = 0  # the largest table seen at a checkpoint
    checkpoints: list[tuple[int, int, float]] = field(default_factory=list)  # (requests, entries, MiB)


async def fill(
    run: CacheRun, requests: int, body_size: int, clock: Callable[[], float], start: int = 0
) -> Fill:
    """``requests`` distinct requests answered and cached, as a worker's leads would."""
    seen = Fill()
    for i in range(start, start + requests):
        key = request_fingerprint(INTEGRATION, "POST", "https://partner.example/score", b"lead-%d" % i)
        await run.cache.put(key, response(clock(), body_size, i))
        if i % 1000 == 999:
            # A worker's writes come between network waits; here the producer needs its turn.
            await run.app.producer.flush()
            seen.most_entries = max(seen.most_entries, len(run.table.data))
        if i % 10_000 == 9_999:
            seen.checkpoints.append((i + 1 - start, len(run.table.data), rss_mib()))
    seen.requests = requests
    return seen


@dataclass
class Changelog:
    records: int  # in the topic now (tombstones included)
    live: set[bytes]  # keys whose last record is a value


async def read_changelog(bootstrap: str, topic: str) -> Changelog:
    ends = await end_offsets(bootstrap, [topic])
    total = sum(ends.values())
    last: dict[bytes, bool] = {}
    records = await collect(
        bootstrap,
        [topic],
        lambda got: bool(got) and got[-1].offset >= total - 1,
        timeout=120,
        on_record=lambda r: last.__setitem__(r.key or b"", bool(r.value)),
    )
    return Changelog(len(records), {key for key, alive in last.items() if alive})


async def cleanup_policy(bootstrap: str, topic: str) -> str:
    """The topic's ``cleanup.policy`` as the broker has it."""
    wanted = ConfigResource(ConfigResourceType.TOPIC, topic, {"cleanup.policy": None})
    async with admin_client(bootstrap) as admin:
        (response,) = await admin.describe_configs([wanted])
    for resource in response.resources:  # (error_code, error_message, type, name, entries)
        for entry in resource[4]:  # (name, value, read_only, ...) per config
            if entry[0] == "cleanup.policy":
                return str(entry[1])
    return "unknown"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("LEADSTREAMS_BOOTSTRAP"))
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--max-entries", type=int, default=10_000)
    parser.add_argument("--body-bytes", type=int, default=1024)
    parser.add_argument("--compaction-wait", type=float, default=90.0, help="seconds to wait for the cleaner")
    args = parser.parse_args()
    if not args.bootstrap:
        parser.error("set --bootstrap or LEADSTREAMS_BOOTSTRAP (or run through deploy/kafka/with-kafka.sh)")
    logging.basicConfig(level=logging.ERROR)
    app_id = f"cache-bound-{uuid.uuid4().hex[:8]}"
    policy = CachePolicy({INTEGRATION: CacheLimit(args.max_entries, max_age=3600)}, default=None)
    size = f"{args.body_bytes}-byte answers, max_entries {args.max_entries}"
    print(f"{args.requests} distinct requests, {size}")

    async with cache_app(args.bootstrap, app_id, policy, topic_configs=FAST_COMPACTION) as run:
        before = rss_mib()
        started = time.monotonic()
        filled = await fill(run, args.requests, args.body_bytes, time.time)
        print(f"filled in {time.monotonic() - started:.1f} s; RSS before {before:.1f} MiB")
        for done, entries, mib in filled.checkpoints:
            print(f"  after {done:>7} requests: {entries:>6} entries in the table, RSS {mib:.1f} MiB")
        entries = f"table {len(run.table.data)}, index {len(run.cache)}, most seen {filled.most_entries}"
        print(f"entries: {entries}")
        changelog = run.changelog
        print(f"changelog {changelog}: cleanup.policy={await cleanup_policy(args.bootstrap, changelog)}")
        written = sum((await end_offsets(args.bootstrap, [changelog])).values())
        now = await read_changelog(args.bootstrap, changelog)
        print(f"changelog: {written} records written, {now.records} present, {len(now.live)} live keys")
        deadline = time.monotonic() + args.compaction_wait
        extra = 0
        while time.monotonic() < deadline and now.records > len(now.live) + 1000:
            await asyncio.sleep(5)  # the broker's log cleaner runs on its own schedule
            # One more request now and then, as traffic would: a segment rolls on a write.
            await fill(run, 1, args.body_bytes, time.time, start=args.requests + extra)
            extra += 1
            now = await read_changelog(args.bootstrap, changelog)
        print(
            f"changelog after compaction ({time.monotonic() - deadline + args.compaction_wait:.0f} s): "
            f"{now.records} records present, {len(now.live)} live keys"
        )

    replay_started = time.monotonic()
    async with cache_app(args.bootstrap, app_id, policy) as again:
        replayed = len(again.table.data)
        await again.cache.get("nothing:here")  # the first lookup indexes the replayed table
        print(
            f"restart: {replayed} entries replayed in {time.monotonic() - replay_started:.1f} s, "
            f"{len(again.cache)} indexed, RSS {rss_mib():.1f} MiB"
        )


if __name__ == "__main__":
    asyncio.run(main())
