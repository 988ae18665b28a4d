"""The rate-limit scenarios of `make reliability`: `shared_limit` (two workers sharing a
limit) and `loaded` (CPU hogs beside one worker, then two).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from faulty_partner import Faults
from group_run import Run, Sizes, leads, until_group_has
from lead_tally import Progress, Tally, track
from partner_process import PartnerProcess, RateSeen, cpu_hogs

from agents.kafka_io import publish


@dataclass
class LimitRun:
    """A group of workers through a batch of leads against a partner in its own process."""

    run: Run
    tally: Tally
    seen: RateSeen
    elapsed: float
    progress: Progress


async def limit_run(
    bootstrap: str, workdir: Path, name: str, count: int, rate: int, workers: int, verbose: bool = False
) -> LimitRun:
    """Start the partner and the group, wait for every member, then publish ``count`` leads
    and wait for their outputs; what the partner saw, sliding second by sliding second."""
    run = Run(bootstrap, workdir, rate, Faults(0, 0, 0, 0), workers=workers, verbose=verbose)
    partner = PartnerProcess(run.api_key, run.faults, workdir / f"{run.prefix}-partner.log")
    tally = Tally()
    progress = Progress(name, count, tally, run)
    try:
        async with progress.reporting():
            await run.start(await partner.start())
            progress.enter(f"waiting for {workers} worker(s) in the group")
            await until_group_has(bootstrap, run.prefix, members=workers, processes=run.processes)
            started = time.monotonic()
            tracking = asyncio.ensure_future(track(run, count, 300, tally))
            await publish(bootstrap, run.topics[0], leads(count, run.prefix))
            progress.enter("waiting for every input to have an output")
            await tracking
            elapsed = time.monotonic() - started
            stats = await partner.stats()
    finally:
        run.stop()
        partner.stop()
    return LimitRun(run, tally, RateSeen.of(stats["arrivals"], rate), elapsed, progress)  # type: ignore[arg-type]


async def scenario_shared_limit(bootstrap: str, workdir: Path, sizes: Sizes) -> tuple[str, Run, Tally]:
    """Two workers in one group: together they stay under the integration's limit."""
    # Debug logs with bodies: the secrets scan then reads every request the workers made.
    done = await limit_run(bootstrap, workdir, "shared_limit", sizes.shared_leads, sizes.shared_rate, 2, True)
    seen, lost = done.seen, done.tally.lost
    line = (
        f"shared_limit: workers=2 in={len(done.tally.inputs)} lost={lost} max_rps={seen.max_rps} "
        f"mean_rps={seen.mean_rps:.0f} limit={sizes.shared_rate} elapsed={done.elapsed:.1f}s"
        f"{done.progress.over(seen)}"
    )
    # Together under the limit in every sliding second, and close to it on average.
    ok = lost == 0 and seen.max_rps <= sizes.shared_rate and seen.mean_rps >= 0.8 * sizes.shared_rate
    return ("" if ok else "FAILED ") + line, done.run, done.tally


async def scenario_loaded(bootstrap: str, workdir: Path, sizes: Sizes) -> tuple[str, list[tuple[Run, Tally]]]:
    """``hogs`` busy processes beside the partner and one worker, then two workers sharing
    the limit: what the partner saw in its busiest sliding second, against the bound (and,
    with no hogs, the mean against 95 % of the limit)."""
    lines, runs, ok = [], [], True
    with cpu_hogs(sizes.hogs):
        for workers in (1, 2):
            done = await limit_run(
                bootstrap, workdir, f"loaded/{workers}", sizes.loaded_leads, sizes.loaded_rate, workers
            )
            seen = done.seen
            lines.append(f"workers={workers} max_rps={seen.max_rps} mean_rps={seen.mean_rps:.0f} "
                         f"elapsed={done.elapsed:.1f}s{done.progress.over(seen)}")  # fmt: skip
            ok = ok and done.tally.lost == 0 and seen.max_rps <= sizes.loaded_rate
            # On a quiet machine the limit is also used: at least 95 % of it on average.
            ok = ok and (sizes.hogs > 0 or seen.mean_rps >= 0.95 * sizes.loaded_rate)
            runs.append((done.run, done.tally))
    line = (
        f"loaded: hogs={sizes.hogs} leads={sizes.loaded_leads} limit={sizes.loaded_rate} "
        f"lost={sum(tally.lost for _, tally in runs)} " + " | ".join(lines)
    )
    return ("" if ok else "FAILED ") + line, runs
