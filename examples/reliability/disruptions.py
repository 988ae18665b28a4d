"""What `make reliability` does to the worker and the broker: worker restarts after a
kill, the broker restart, and the search for the worst moment to kill (a slow lead at the
head of its partition).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import subprocess
import time
from dataclasses import dataclass, field

from aiokafka.errors import KafkaError
from faulty_partner import Stats
from group_run import Run
from lead_tally import Progress, Tally, output_gap, time_to_output

from agents.kafka_io import committed_offsets
from examples.support.process import ROOT, WorkerProcess

# s a slow lead stays at the head of its partition, once the group's commit reached it,
# before the kill: past Faust's 2.8 s commit interval, so the next commit has been made,
# and a rule that commits past an unfinished lead has done so.
HELD_AT_HEAD = 2.8 + 0.7


async def restart(worker: WorkerProcess, tally: Tally, progress: Progress, label: str) -> float:
    """Start the (killed) worker again, same instance id; seconds from the start to its first output."""
    worker.start()
    progress.event(f"{label} restart")
    progress.enter(f"{label}: waiting for the restarted worker's first output")
    return await time_to_output(tally, worker.started, 300, f"the first output after {label}")


async def restart_broker_then_finish(
    state: str, progress: Progress, tracking: asyncio.Future[None], tally: Tally
) -> tuple[float, float | None]:
    """Restart the broker, then wait for every input's output: (seconds the broker was
    away, seconds from its return to the next output)."""
    away, back = await restart_broker(state, progress)
    progress.enter("waiting for every input to have an output")
    await tracking
    return away, output_gap(tally, back)


async def restart_broker(state: str, progress: Progress) -> tuple[float, float]:
    """deploy/kafka/restart.sh: (seconds the broker was away, time.time() it came back)."""
    progress.enter("broker restart: restart.sh running")
    progress.event("broker stop")
    began = time.time()
    restart = await asyncio.to_thread(
        subprocess.run, [str(ROOT / "deploy/kafka/restart.sh"), state], capture_output=True, text=True
    )
    if restart.returncode:
        raise RuntimeError(f"broker restart failed: {restart.stderr}")
    progress.broker_back = back = time.time()
    progress.event("broker back")
    return round(back - began, 1), back


def slow_heads(stats: Stats, tally: Tally, key_of: dict[str, bytes], since: float) -> list[tuple[int, int]]:
    """The slow leads the worker started at ``since`` (time.time()) still waits for (a
    second more at least) while it wrote a later lead of their partition: their
    partition/offset."""
    now = time.time()
    heads = []
    for call in list(stats.slow.values()):
        where = tally.keys.get(key_of.get(call.email, b""))
        if call.started < since or call.until < now + 1 or where is None or where in tally.outputs:
            continue
        if tally.written_since(where[0], since) > where[1]:
            heads.append(where)
    return heads


async def worst_moment(
    run: Run, stats: Stats, tally: Tally, key_of: dict[str, bytes], enough: float = math.inf
) -> tuple[int, int] | None:
    """Until a slow lead is at the head of its partition: unfinished, later leads of its
    partition written by this worker, and the group's commit at it (or past it) for
    HELD_AT_HEAD seconds since; that lead. None once ``enough`` outputs are read."""
    reached: dict[tuple[int, int], float] = {}  # when the commit was first seen at the head
    deadline = time.monotonic() + 300
    while len(tally.outputs) < enough:
        if time.monotonic() > deadline:
            raise TimeoutError("no slow lead at the head of its partition in 300 s")
        heads = slow_heads(stats, tally, key_of, run.processes[0].started)
        committed: dict[tuple[str, int], int] = {}
        if heads:
            with contextlib.suppress(TimeoutError, KafkaError, OSError):
                committed = await committed_offsets(run.bootstrap, run.prefix)
        now = time.monotonic()
        for head in heads:
            at_head = committed.get((run.topics[0], head[0]), 0) >= head[1]  # or past it
            if at_head and now - reached.setdefault(head, now) >= HELD_AT_HEAD:
                return head
        await asyncio.sleep(0.5)  # polling the partner's calls and the group's commits
    return None


@dataclass
class SlowKills:
    """The kills of scenario_slow_kills, each at a moment a slow lead holds its partition's
    head while later leads of that partition are written, and what each found."""

    run: Run
    stats: Stats
    tally: Tally
    key_of: dict[str, bytes]
    progress: Progress
    recoveries: list[float] = field(default_factory=list)
    at_risk: list[tuple[int, int]] = field(default_factory=list)  # the slow lead at the head at each kill
    committed_past: int = 0  # kills at which the group had committed past that lead

    def waiting(self, label: str) -> None:
        waiting = "waiting for a slow lead at the head of its partition, later ones written"
        self.progress.enter(f"{label}: {waiting}")

    async def kill_at_a_slow_head(self, label: str) -> None:
        run, tally, progress = self.run, self.tally, self.progress
        worker = run.processes[0]
        self.waiting(label)
        head = await worst_moment(run, self.stats, tally, self.key_of)
        assert head is not None
        self.at_risk.append(head)
        worker.kill()
        progress.event(label)
        committed = await committed_offsets(run.bootstrap, run.prefix)
        partition, offset = head
        at = committed.get((run.topics[0], partition), 0)
        self.committed_past += at > offset
        progress.enter(
            f"{label}: killed with partition {partition}'s offset {offset} unfinished "
            f"(outputs up to {tally.written_since(partition)}), committed: {at}"
        )
        self.recoveries.append(await restart(worker, tally, progress, label))
