"""At-least-once: the commit never passes a lead still in flight (issue 13's two reproductions).

A slow lead sits at the head of partition 0 (of a fresh group, or mid-stream) while
the leads behind it finish. The group's committed offset must stay at the slow lead
while it waits for its partner; after ``kill -9`` and a restart it comes out exactly
once. Partition 1 gets a few fast leads afterwards: once *its* commit shows, the worker
has committed since partition 0's fast leads finished, so partition 0's commit is read
after a commit that could have passed the slow lead, not before.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from commit_run import FAST, CommitRun, commit_run, leads

from examples.support.process import wait_for

pytestmark = pytest.mark.kafka


@pytest.fixture
async def run(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[CommitRun]:
    async with commit_run(kafka_bootstrap, tmp_path, "at-least-once") as started:
        yield started

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
