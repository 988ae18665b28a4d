"""The scenarios of `make reliability` that kill the worker and restart the broker:
`faults` (partner faults) and `slow_kills` (slow leads at the head of a partition).
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import orjson
from disruptions import SlowKills, restart, restart_broker_then_finish, worst_moment
from faulty_partner import STATS, Faults, create_faulty_partner
from group_run import SLOW_FLOW, Run, Sizes, leads
from lead_tally import Progress, Tally, track
from partner_process import PartnerProcess, RateSeen

from agents.kafka_io import publish
from examples.support.process import serve_app, wait_for


async def scenario_faults(
    bootstrap: str, state: str, workdir: Path, sizes: Sizes, loglevel: str = "warning"
) -> tuple[str, Run, Tally]:
    """Partner faults; SIGKILL the worker `kills` times; restart the broker once. At-least-once,
    explicitly: the comparison for the exactly_once scenario (a kill writes leads twice here)."""
    run = Run(bootstrap, workdir, sizes.rate, Faults(), loglevel=loglevel, guarantee="at-least-once")
    partner = PartnerProcess(run.api_key, run.faults, workdir / f"{run.prefix}-partner.log")
    tally = Tally()
    recoveries: list[float] = []
    progress = Progress("faults", sizes.leads, tally, run)
    try:
        async with progress.reporting():
            await run.start(await partner.start())
            tracking = asyncio.ensure_future(track(run, sizes.leads, sizes.deadline, tally))
            await publish(bootstrap, run.topics[0], leads(sizes.leads, run.prefix))
            worker = run.processes[0]
            for kill in range(1, sizes.kills + 1):
                share = kill * sizes.leads // (sizes.kills + 2)
                progress.enter(f"kill {kill}/{sizes.kills}: waiting for {share} outputs")
                await wait_for(
                    lambda s=share: sum(tally.outputs.values()) >= s, 300, f"outputs before kill {kill}"
                )
                worker.kill()
                progress.event(f"kill {kill}")
                recoveries.append(await restart(worker, tally, progress, f"kill {kill}"))
            progress.enter("waiting for 80% of the outputs before the broker restart")
            await wait_for(
                lambda: sum(tally.outputs.values()) >= sizes.leads * 0.8, 300, "80% of the outputs"
            )
            away, gap = await restart_broker_then_finish(state, progress, tracking, tally)
            alive = worker.alive
            stats = await partner.stats()
    finally:
        run.stop()
        partner.stop()
    seen = RateSeen.of(stats["arrivals"], sizes.rate)  # type: ignore[arg-type]
    line = (
        f"faults: in={len(tally.inputs)} out={len(set(tally.outputs))} lost={tally.lost} "
        f"errors_without_reason={tally.without_reason} "
        f"duplicates={tally.duplicates} kills={sizes.kills} recovery_s={recoveries} broker_restarts=1 "
        f"broker_away_s={away} broker_gap_s={gap} worker_alive={alive} "
        f"max_rps={seen.max_rps} limit={sizes.rate}{progress.over(seen)} "
        f"partner={stats['outcomes']} outcomes={dict(tally.outcomes)}"
    )
    ok = tally.lost == 0 and tally.without_reason == 0 and seen.max_rps <= math.ceil(sizes.rate) and alive
    ok = ok and max(recoveries, default=0) <= sizes.recovery_bound
    return ("" if ok else "FAILED ") + line, run, tally


async def scenario_slow_kills(
    bootstrap: str, state: str, workdir: Path, sizes: Sizes, loglevel: str = "warning"
) -> tuple[str, Run, Tally]:
    """A few leads answered only after 1-20 s; SIGKILL the worker while one of them is at
    the head of its partition and later leads of that partition are written; restart the
    broker once at such a moment too. At-least-once, explicitly: the hazard it looks for (a
    commit past an unfinished head lead) needs later leads written first; exactly-once
    releases outputs in input order, so no such moment comes (the search timed out at 300 s)."""
    faults = Faults(0, 0, 0, 0, slow_share=sizes.slow_share)
    run = Run(
        bootstrap,
        workdir,
        sizes.slow_rate,
        faults,
        flow=SLOW_FLOW,
        loglevel=loglevel,
        guarantee="at-least-once",
    )
    partner = create_faulty_partner(run.api_key, run.faults)
    stats = partner[STATS]
    runner, url = await serve_app(partner)
    tally = Tally()
    batch = leads(sizes.slow_leads, run.prefix)
    key_of = {orjson.loads(value)["email"]: key for key, value in batch}
    progress = Progress("slow_kills", sizes.slow_leads, tally, run)
    try:
        async with progress.reporting():
            await run.start(url)
            tracking = asyncio.ensure_future(
                track(run, sizes.slow_leads, sizes.deadline, tally, busy=lambda: stats.in_flight > 0)
            )
            await publish(bootstrap, run.topics[0], batch)
            kills = SlowKills(run, stats, tally, key_of, progress)
            for kill in range(1, sizes.slow_kills + 1):
                await kills.kill_at_a_slow_head(f"kill {kill}/{sizes.slow_kills}")
            kills.waiting("broker restart")
            await worst_moment(run, stats, tally, key_of, enough=0.9 * sizes.slow_leads)
            away, gap = await restart_broker_then_finish(state, progress, tracking, tally)
            alive = run.processes[0].alive
    finally:
        run.stop()
        await runner.cleanup()
    lost_at_head = sum(where not in tally.outputs for where in kills.at_risk)
    line = (
        f"slow_kills: in={len(tally.inputs)} out={len(set(tally.outputs))} lost={tally.lost} "
        f"duplicates={tally.duplicates} kills={sizes.slow_kills} recovery_s={kills.recoveries} "
        f"committed_past_slow_head={kills.committed_past}/{sizes.slow_kills} lost_at_head={lost_at_head} "
        f"broker_restarts=1 broker_away_s={away} broker_gap_s={gap} worker_alive={alive} "
        f"slow_calls={stats.outcomes['slow']} partner_max_in_flight={stats.max_in_flight}"
    )
    ok = tally.lost == 0 and alive and max(kills.recoveries, default=0) <= sizes.recovery_bound
    return ("" if ok else "FAILED ") + line, run, tally
