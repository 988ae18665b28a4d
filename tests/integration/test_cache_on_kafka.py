"""The fallback cache's bound on the real broker: agents.table_cache on a real Faust GlobalTable
(started in this process as a worker starts it, without agents), its changelog read back.
examples/cache_bound/cache_bound.py is the full-size run (100,000 requests)."""

from __future__ import annotations

import sys
import uuid

import pytest

from examples.support.process import ROOT
from streams.cache_index import CacheLimit, CachePolicy

sys.path.insert(0, str(ROOT / "examples" / "cache_bound"))
from cache_bound import (
    INTEGRATION,
    cache_app,
    cleanup_policy,
    fill,
    read_changelog,
    rss_mib,
)

pytestmark = pytest.mark.kafka


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.timeout(120)
async def test_the_table_and_its_changelog_stay_within_the_bound(kafka_bootstrap: str) -> None:
    """20,000 distinct requests with 2 KB answers into max_entries 500: the table holds 500
    (a little more for a moment: Faust applies the changelog's copy of a write after this
    worker deleted it, until the tombstone follows), the memory stops growing, and the
    changelog's live keys are the newest 500 (the rest tombstoned) in a compacted topic."""
    app_id = f"cache-{uuid.uuid4().hex[:8]}"
    policy = CachePolicy({INTEGRATION: CacheLimit(max_entries=500, max_age=3600)}, default=None)
    clock = Clock(1_000_000.0)

    def tick() -> float:
        clock.now += 0.001
        return clock.now

    async with cache_app(kafka_bootstrap, app_id, policy, clock=clock) as run:
        await fill(run, 5_000, 2048, tick)
        warm = rss_mib()
        filled = await fill(run, 15_000, 2048, tick, start=5_000)
        assert len(run.cache) == 500
        assert len(run.table.data) <= 500 + 1000, len(run.table.data)  # one flush interval behind
        assert filled.most_entries <= 500 + 1000
        grown = rss_mib() - warm
        # Unbounded, 15,000 more entries would hold about 40 MiB of encoded answers.
        assert grown < 15, f"RSS grew {grown:.1f} MiB over 15,000 more requests"
        changelog = run.changelog
        newest = {key.encode() for key in run.cache.index}
    assert await cleanup_policy(kafka_bootstrap, changelog) == "compact"
    written = await read_changelog(kafka_bootstrap, changelog)
    assert written.live == newest
    assert written.records >= 20_000 + 19_500  # every write, and a tombstone for every eviction


@pytest.mark.timeout(120)
async def test_expired_entries_are_tombstoned_and_do_not_come_back_after_a_restart(
    kafka_bootstrap: str,
) -> None:
    app_id = f"cache-{uuid.uuid4().hex[:8]}"
    policy = CachePolicy({INTEGRATION: CacheLimit(max_entries=1000, max_age=60)}, default=None)
    clock = Clock(1_000_000.0)
    async with cache_app(kafka_bootstrap, app_id, policy, clock=clock) as run:
        await fill(run, 300, 100, clock)
        assert len(run.cache) == len(run.table.data) == 300

    clock.now += 61  # the worker was down for longer than the entries' age
    async with cache_app(kafka_bootstrap, app_id, policy, clock=clock) as run:
        assert len(run.table.data) == 300  # Faust replayed them from the changelog
        assert await run.cache.get("partner:anything") is None  # the first lookup forgets them
        assert len(run.table.data) == len(run.cache) == 0
        changelog = run.changelog

    async with cache_app(kafka_bootstrap, app_id, policy, clock=clock) as run:
        assert len(run.table.data) == 0  # the tombstones replayed too
    replayed = await read_changelog(kafka_bootstrap, changelog)
    assert (replayed.records, replayed.live) == (600, set())
