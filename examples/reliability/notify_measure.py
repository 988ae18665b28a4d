"""Notification webhooks measured on the real broker (issue 21), one summary line per scenario:

latency: the same paced leads through a flow without and one with an important webhook
    that answers after 2 s (two workers, one partner; one after the other, or at the same
    time with --small as in the test): publish-to-output
    p50/p95 of each (an output record's CreateTime minus its input's), and every notification
    delivered with as many requests at the partner as its attempts events record.
outage: the webhooks answer 503 for the first half of the leads, then 200: every important
    (CRM) notification ends delivered after delayed retries; every non-important (alert) one
    of the outage ends failed after one round; requests at the partner == requests recorded.
kill: kill -9 of the worker while notifications wait for a slow webhook, then a restart:
    every lead whose event says its notification was queued has its record on the
    notifications topic and a delivered attempts event (counted by lead id).

Run by hand (or `make reliability`) with a broker: deploy/kafka/with-kafka.sh
.venv/bin/python examples/reliability/notify_measure.py [--only latency,kill] [--small].
tests/integration/test_notifications_on_kafka.py runs the same scenarios at small sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, when run as a script
from agents.kafka_io import committed_offsets
from examples.reliability.notify_harness import (
    ALERT,
    CRM,
    Ledger,
    NotifyRun,
    WebhookPartner,
    first,
    key,
    leads,
    serving,
    settle,
    tapping,
    until,
)


@dataclass(frozen=True)
class Sizes:
    leads: int = 20_000  # latency: per flow
    rate: float = 400.0  # leads/s published (the worker does ~5,000/s: it keeps up)
    webhook_delay: float = 2.0
    concurrency: int = 500  # of the webhook integration in the latency run
    outage_leads: int = 10_000
    kill_leads: int = 20_000
    kills: int = 3
    kill_rate: float = 200.0  # leads/s: the run lasts past the group's first commits (every 2.8 s)
    kill_delay: float = 0.5  # the webhook's answer time while the worker is killed
    kill_concurrency: int = 50  # 100 notifications/s at 0.5 s: a backlog builds behind the leads
    deadline: float = 600.0  # s for any one wait
    together: bool = False  # latency: both flows at the same time (else one after the other)

    @classmethod
    def small(cls) -> Sizes:
        """For `make test`: 2,000 leads for the latency comparison (2,000 x 2 s at
        concurrency 200 = 20 s of delivery), 1,000 for the outage and the kill."""
        return cls(leads=2_000, concurrency=200, outage_leads=1_000, kill_leads=1_000, kills=1, deadline=120,
                   together=True)  # fmt: skip


def mismatched(ledger: Ledger, seen: Counter[str], ids: list[str], steps: tuple[str, ...]) -> list[str]:
    """Notifications whose requests at the partner (``seen``, by Idempotency-Key) differ from
    the sum of ``requests`` over their attempts events."""
    return [
        f"{key(i, s)} partner={seen[key(i, s)]} recorded={ledger.requests_recorded(i, s)}"
        for i in ids
        for s in steps
        if seen[key(i, s)] != ledger.requests_recorded(i, s)
    ]


async def warm_up(run: NotifyRun, ledger: Ledger, deadline: float) -> str:
    """One lead through: the worker has joined its group before anything is measured."""
    lead_id = f"{run.prefix}-warmup"
    await run.publish(leads(f"{run.prefix}-warmup", 1))
    await until(
        run, ledger, lambda: f"{lead_id}-0" in ledger.outputs, deadline, f"{run.prefix}'s warm-up lead"
    )
    return f"{lead_id}-0"


@dataclass
class Latency:
    leads: int
    rate: float
    delay: float
    together: bool
    p50_without: float
    p95_without: float
    p50_with: float
    p95_with: float
    # Of publish-to-output, the time before the worker took the lead (received_at - CreateTime):
    # where a lead held back by the notifications' fetch would wait.
    p50_before_worker_without: float
    p50_before_worker_with: float
    p95_before_worker_with: float
    not_queued: list[str]  # leads whose event does not say the notification was queued
    not_delivered: list[str]  # notifications whose last attempts event is not "delivered"
    mismatched: list[str]
    duplicates: int  # notifications the partner received more than once
    requests: int  # at the partner
    delivery_s: float  # from the first lead published to the last notification delivered

    def line(self) -> str:
        return (
            f"latency: leads={self.leads} rate={self.rate:g}/s webhook={self.delay:g}s "
            f"flows={'together' if self.together else 'one after the other'} "
            f"p50_without={self.p50_without:.0f}ms p50_with={self.p50_with:.0f}ms "
            f"p95_without={self.p95_without:.0f}ms p95_with={self.p95_with:.0f}ms "
            f"before_worker_p50_without={self.p50_before_worker_without:.0f}ms "
            f"before_worker_p50_with={self.p50_before_worker_with:.0f}ms "
            f"before_worker_p95_with={self.p95_before_worker_with:.0f}ms "
            f"queued={self.leads - len(self.not_queued)} delivered={self.leads - len(self.not_delivered)} "
            f"requests={self.requests} mismatched={len(self.mismatched)} duplicates={self.duplicates} "
            f"delivery={self.delivery_s:.1f}s"
        )


async def scenario_latency(bootstrap: str, workdir: Path, sizes: Sizes) -> Latency:
    partner = WebhookPartner(delay=sizes.webhook_delay)
    async with serving(partner) as url:
        plain = NotifyRun(bootstrap, workdir, url, notify=())
        notified = NotifyRun(bootstrap, workdir, url, notify=(CRM,), concurrency=sizes.concurrency)
        await plain.start()
        await notified.start()
        try:
            async with tapping(plain) as plain_ledger, tapping(notified) as ledger:
                _, warm = await asyncio.gather(
                    warm_up(plain, plain_ledger, sizes.deadline), warm_up(notified, ledger, sizes.deadline)
                )
                assert plain.worker is not None
                if sizes.together:
                    # Both flows take the same paced leads at the same time: whatever else the
                    # machine does meanwhile (2 cores shared with the broker), both runs see it.
                    started = time.monotonic()
                    plain_ids, ids = await asyncio.gather(
                        paced(plain, plain_ledger, sizes), paced(notified, ledger, sizes)
                    )
                    plain.worker.kill()  # done with it (no state to keep): its CPU goes to the deliveries
                else:  # one after the other, each alone on the machine (2 x 400/s for minutes saturates it)
                    plain_ids = await paced(plain, plain_ledger, sizes)
                    plain.worker.kill()
                    started = time.monotonic()
                    ids = await paced(notified, ledger, sizes)
                everyone = [warm, *ids]
                await settle(notified, ledger, lambda: ledger.all_final(everyone, (CRM,)), sizes.deadline,
                             "a final attempts event for every notification")  # fmt: skip
                delivery = time.monotonic() - started
        finally:
            await plain.stop()
            await notified.stop()
    seen = partner.received()
    return Latency(
        leads=len(ids), rate=sizes.rate, delay=sizes.webhook_delay, together=sizes.together,
        p50_without=plain_ledger.p50_ms(plain_ids), p95_without=plain_ledger.percentile_ms(plain_ids, 95),
        p50_with=ledger.p50_ms(ids), p95_with=ledger.percentile_ms(ids, 95),
        p50_before_worker_without=plain_ledger.p50_ms(plain_ids, before_worker=True),
        p50_before_worker_with=ledger.p50_ms(ids, before_worker=True),
        p95_before_worker_with=ledger.percentile_ms(ids, 95, before_worker=True),
        not_queued=[i for i in ids if ledger.notification(i, CRM) != "queued"],
        not_delivered=[i for i in ids if ledger.final(i, CRM) != "delivered"],
        mismatched=mismatched(ledger, seen, everyone, (CRM,)),
        duplicates=sum(seen[key(i, CRM)] > 1 for i in everyone),
        requests=seen.total(), delivery_s=delivery,
    )  # fmt: skip


async def paced(run: NotifyRun, ledger: Ledger, sizes: Sizes) -> list[str]:
    """``sizes.leads`` at ``sizes.rate``; their ids once every one has its output and latency."""
    batch = leads(run.prefix, sizes.leads)
    await run.publish(batch, rate=sizes.rate)
    ids = [lead_id for lead_id, _ in batch]
    await until(run, ledger, lambda: all(i in ledger.latencies_ms for i in ids), sizes.deadline,
                f"{len(ids)} outputs of {run.prefix}")  # fmt: skip
    return ids


@dataclass
class Outage:
    leads: int
    during: int  # leads published while the webhooks answered 503
    important_not_delivered: list[str]  # CRM notifications whose last attempts event is not delivered
    important_retried: int  # CRM notifications of the outage with a "retrying" round
    outage_alerts_not_failed: list[str]  # alerts of the outage whose last event is not failed
    alerts_not_one_round: list[str]  # alerts with other than one attempts event (no tiers for them)
    alerts_after_delivered: int
    alerts_after_reasons: list[tuple[str, int]]  # why the others failed (the most common two)
    leads_not_success: list[str]  # a notification's outcome must not change the lead's
    mismatched: list[str]
    requests: int

    def line(self) -> str:
        return (
            f"outage: leads={self.leads} during={self.during} "
            f"important_delivered={self.leads - len(self.important_not_delivered)}/{self.leads} "
            f"important_retried={self.important_retried} "
            f"outage_alerts_failed={self.during - len(self.outage_alerts_not_failed)}/{self.during} "
            f"alerts_after_delivered={self.alerts_after_delivered}/{self.leads - self.during} "
            f"(others: {self.alerts_after_reasons}) "
            f"alerts_one_round={self.leads * 1 - len(self.alerts_not_one_round)}/{self.leads} "
            f"leads_success={self.leads - len(self.leads_not_success)}/{self.leads} "
            f"requests={self.requests} mismatched={len(self.mismatched)}"
        )


async def scenario_outage(bootstrap: str, workdir: Path, sizes: Sizes) -> Outage:
    partner = WebhookPartner(down=True)
    async with serving(partner) as url:
        run = NotifyRun(bootstrap, workdir, url, notify=(CRM, ALERT), concurrency=50)
        await run.start()
        try:
            async with tapping(run) as ledger:
                half = sizes.outage_leads // 2
                down = leads(f"{run.prefix}-down", half)
                up = leads(f"{run.prefix}-up", sizes.outage_leads - half)
                down_ids, up_ids = [i for i, _ in down], [i for i, _ in up]
                await run.publish(down)
                # Down for the first half: until each of its notifications has had a round.
                await until(run, ledger, lambda: ledger.all_tried(down_ids, (CRM, ALERT)), sizes.deadline,
                            "a first round for every notification of the outage")  # fmt: skip
                partner.down = False
                await run.publish(up)
                ids = down_ids + up_ids
                await settle(run, ledger, lambda: ledger.all_final(ids, (CRM, ALERT)), sizes.deadline,
                             "a final attempts event for every notification")  # fmt: skip
                await until(run, ledger, lambda: all(i in ledger.outputs for i in ids), sizes.deadline,
                            "every lead's output")  # fmt: skip
        finally:
            await run.stop()
    seen = partner.received()
    return Outage(
        leads=len(ids), during=len(down_ids),
        important_not_delivered=[i for i in ids if ledger.final(i, CRM) != "delivered"],
        important_retried=sum(ledger.had(i, CRM, "retrying") for i in down_ids),
        outage_alerts_not_failed=[i for i in down_ids if ledger.final(i, ALERT) != "failed"],
        alerts_not_one_round=[i for i in ids if len(ledger.attempts[(i, ALERT)]) != 1],
        alerts_after_delivered=sum(ledger.final(i, ALERT) == "delivered" for i in up_ids),
        alerts_after_reasons=Counter(
            str(ledger.attempts[(i, ALERT)][-1].get("reason"))[:80] for i in up_ids
            if ledger.final(i, ALERT) != "delivered"
        ).most_common(2),
        leads_not_success=[
            i for i in ids
            if ledger.outputs[i][-1]["outcome"] != "success"
            or ledger.notification(i, CRM) != "queued" or ledger.notification(i, ALERT) != "queued"
        ],
        mismatched=mismatched(ledger, seen, ids, (CRM, ALERT)), requests=seen.total(),
    )  # fmt: skip


@dataclass
class Kill:
    leads: int
    kills: int
    # At each kill: notifications of leads whose input offset the group had committed (the
    # leads will not run again) still waiting for the webhook: on the notifications topic only.
    only_on_kafka_at_kills: list[int] = field(default_factory=list)
    delivered_at_kills: list[int] = field(default_factory=list)  # with a delivered event, at each kill
    no_output: list[str] = field(default_factory=list)  # leads without any output
    queued: int = 0  # leads whose output says their notification was queued
    no_record: list[str] = field(default_factory=list)  # queued, but no record on the notifications topic
    not_delivered: list[str] = field(default_factory=list)  # queued, record or not, no delivered event
    over_recorded: list[str] = field(default_factory=list)  # more requests recorded than the partner saw
    replayed_leads: int = 0  # leads with more than one output (taken again after a kill)
    records_twice: int = 0  # leads with more than one notification record (queued again by the replay)
    redelivered: int = 0  # delivered (event written) before a kill, sent again after it
    duplicates: int = 0  # notifications the partner received more than once (same Idempotency-Key)
    unrecorded: int = 0  # requests the partner received that no attempts event records (in flight at a kill)

    def line(self) -> str:
        return (
            f"kill: leads={self.leads} kills={self.kills} "
            f"only_on_kafka_at_kills={self.only_on_kafka_at_kills} "
            f"delivered_at_kills={self.delivered_at_kills} no_output={len(self.no_output)} "
            f"queued={self.queued} no_record={len(self.no_record)} not_delivered={len(self.not_delivered)} "
            f"lost={len({*self.no_record, *self.not_delivered})} replayed_leads={self.replayed_leads} "
            f"records_twice={self.records_twice} redelivered={self.redelivered} duplicates={self.duplicates} "
            f"unrecorded_requests={self.unrecorded} over_recorded={len(self.over_recorded)}"
        )


async def scenario_kill(bootstrap: str, workdir: Path, sizes: Sizes) -> Kill:
    partner = WebhookPartner(delay=sizes.kill_delay)
    async with serving(partner) as url:
        run = NotifyRun(bootstrap, workdir, url, notify=(CRM,), concurrency=sizes.kill_concurrency)
        await run.start()
        result = Kill(leads=sizes.kill_leads, kills=sizes.kills)
        snapshots: list[tuple[set[str], Counter[str]]] = []  # at each kill: delivered, requests received
        try:
            async with tapping(run) as ledger:
                warm = await warm_up(run, ledger, sizes.deadline)
                batch = leads(run.prefix, sizes.kill_leads)
                ids = [warm, *(i for i, _ in batch)]
                publishing = asyncio.create_task(run.publish(batch, rate=sizes.kill_rate))
                for kill in range(1, sizes.kills + 1):
                    share = sizes.kill_leads * kill // (sizes.kills + 1)
                    waiting = await kill_point(run, ledger, share, sizes.deadline)
                    result.only_on_kafka_at_kills.append(waiting)
                    delivered = {i for i in ledger.outputs if ledger.had(i, CRM, "delivered")}
                    result.delivered_at_kills.append(len(delivered))
                    snapshots.append((delivered, partner.received()))
                    run.kill_and_restart()
                await publishing
                await until(run, ledger, lambda: all(i in ledger.outputs for i in ids), sizes.deadline,
                            "every lead's output after the restart")  # fmt: skip
                queued = [i for i in ids if any(queued_in(e) for e in ledger.outputs[i])]
                every = lambda: all(ledger.had(i, CRM, "delivered") for i in queued)  # noqa: E731
                await settle(
                    run, ledger, every, sizes.deadline, "a delivered event for every queued notification"
                )
        finally:
            await run.stop()
    seen = partner.received()
    result.no_output = [i for i in ids if i not in ledger.outputs]
    result.queued = len(queued)
    result.no_record = [i for i in queued if not ledger.records[(i, CRM)]]
    result.not_delivered = [i for i in queued if not ledger.had(i, CRM, "delivered")]
    result.over_recorded = [i for i in ids if ledger.requests_recorded(i, CRM) > seen[key(i, CRM)]]
    result.replayed_leads = sum(len(ledger.outputs[i]) > 1 for i in ids)
    result.records_twice = sum(ledger.records[(i, CRM)] > 1 for i in ids)
    result.redelivered = sum(seen[key(i, CRM)] > then[key(i, CRM)] for done, then in snapshots for i in done)
    result.duplicates = sum(seen[key(i, CRM)] > 1 for i in ids)
    result.unrecorded = sum(max(0, seen[key(i, CRM)] - ledger.requests_recorded(i, CRM)) for i in ids)
    return result


async def kill_point(run: NotifyRun, ledger: Ledger, share: int, timeout: float) -> int:
    """Until the group has committed ``share`` input offsets and some of those leads'
    notifications still wait for the webhook (so they are on the notifications topic only:
    the leads will not run again); how many wait."""
    deadline = time.monotonic() + timeout
    while True:
        run.check_alive()
        done = {p: o for (t, p), o in (await committed_offsets(run.bootstrap, run.prefix)).items()
                if t == run.topics["input"]}  # fmt: skip
        if sum(max(0, o) for o in done.values()) >= share:
            waiting = sum(
                events[0]["input"]["offset"] < done.get(events[0]["input"]["partition"], -1)
                and not ledger.had(lead_id, CRM, "delivered")
                for lead_id, events in list(ledger.outputs.items())
            )
            if waiting:
                return waiting
        if time.monotonic() > deadline:
            raise TimeoutError(f"{run.prefix}: no kill point with {share} leads committed\n{run.log_tail()}")
        await asyncio.sleep(0.1)  # polling the group's commit, bounded by the deadline


def queued_in(event: dict[str, object]) -> bool:
    steps = event.get("steps")
    return isinstance(steps, list) and any(
        s.get("name") == CRM and s.get("notification") == "queued" for s in steps if isinstance(s, dict)
    )


SCENARIOS = {"latency": scenario_latency, "outage": scenario_outage, "kill": scenario_kill}


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios, comma-separated")
    parser.add_argument("--small", action="store_true", help="the test's sizes")
    args = parser.parse_args(argv)
    bootstrap = os.environ.get("LEADSTREAMS_BOOTSTRAP")
    if not bootstrap:
        print("LEADSTREAMS_BOOTSTRAP is not set: run through deploy/kafka/with-kafka.sh", file=sys.stderr)
        return 2
    sizes = Sizes.small() if args.small else Sizes()
    workdir = Path(tempfile.mkdtemp(prefix="notify-measure-"))
    print(f"notify: worker logs in {workdir}", file=sys.stderr)
    for name in args.only.split(","):
        started = time.monotonic()
        result = await SCENARIOS[name](bootstrap, workdir, sizes)  # type: ignore[operator]
        print(f"{result.line()} ({time.monotonic() - started:.0f}s)", flush=True)
        if name == "kill" and isinstance(result, Kill):
            for what, items in (("no record", result.no_record), ("not delivered", result.not_delivered)):
                if items:
                    print(f"  {what}: {first(items, 10)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
