"""One flow's failures never slow or stop another (issue 19), on the real broker.

One worker (``leadstreams worker DIR``, exactly-once, ``--max-in-flight 20``) runs three
flows from a directory. SLOW calls a partner that answers every request after 8 s: its
leads, published at once, fill its cap within a moment and the rest wait (parked, its
partitions paused). FAST calls a partner that answers at once, BROKEN's step fails on a
template error (strict, a field no lead has); their leads are published at a steady pace
while SLOW is saturated. FAST's latency (its input's write to its output being readable
read_committed) must stay low and all of FAST must be done long before SLOW's backlog is;
BROKEN's leads go to its errors topic; in the end every lead of every flow is written
once (by lead id). Without the parking, SLOW's full cap holds the shared fetch and FAST's
leads wait for SLOW's partner: p95 several seconds.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "examples" / "reliability"))  # (appended: its module names shadow nothing)

from faulty_partner import STATS, create_faulty_partner  # noqa: E402
from group_run import leads  # noqa: E402
from many_flows import FLOWS, NO_FAULTS, Reader, Version, Worker, flow_text, owning, publish_paced, until  # noqa: E402

from agents.kafka_io import Record, end_offsets, publish  # noqa: E402
from examples.bench.stats import percentiles_ms  # noqa: E402
from examples.support.process import WorkerProcess, free_port, serve_app, wait_for  # noqa: E402

pytestmark = pytest.mark.kafka

SLOW, FAST, BROKEN = FLOWS  # many_flows' reader reads flows named a, b, c
CAP = 20  # --max-in-flight, per flow
SLOW_ANSWER = 8.0  # s the slow partner takes for every request
SLOW_LEADS = 3 * CAP  # three rounds of its cap: its backlog drains about 3 x 8 s after it starts
PACED, RATE = 300, 50.0  # FAST's (and BROKEN's) leads, published side by side at RATE per second
# FAST's bounds. Without the parking its leads wait for rounds of SLOW's partner (8 s each):
# p95 16 s. With it, measured p95 0.25 s on a quiet 2-core machine, up to 2.1 s while other
# runs loaded it (load average 6-10; FAST alone, SLOW idle, did as badly: 1.4 s).
FAST_P95_MS = 3000.0
FAST_MAX_MS = SLOW_ANSWER * 1000 / 2
# s between the worker's transactions (default 1 s): FAST's latency then shows its waits more
# than the cadence at which outputs become readable
COMMIT_INTERVAL = 0.2
STARTUP = 90.0  # s for the worker to own every flow's partitions


def flow_file(prefix: str, flow: str, base_url: str) -> Version:
    """many_flows' one-step flow on the partner at ``base_url``; SLOW's timeout above its
    partner's answer, BROKEN's request reading a field no lead has (strict: a template error)."""
    document = yaml.safe_load(flow_text(prefix, flow, "v1"))
    partner = document["integrations"]["partner"]
    partner["base_url"], partner["timeout"] = base_url, f"{SLOW_ANSWER + 7:g}s"
    if flow == BROKEN:
        step = document["steps"][0]
        step["strict"] = True
        step["request"]["json"]["email"] = "{{ lead.x.y.z }}"
    return Version(flow, "v1", yaml.safe_dump(document, sort_keys=False))


class OutcomeReader(Reader):
    """many_flows' reader, also counting each flow's outputs by topic kind and outcome, and
    the reasons of its errors."""

    def __init__(self, kafka: str, prefix: str, texts: dict[str, list[Version]]) -> None:
        super().__init__(kafka, prefix, texts)
        self.outcomes: dict[str, Counter[str]] = {flow: Counter() for flow in FLOWS}
        self.reasons: dict[str, set[str]] = {flow: set() for flow in FLOWS}

    def add(self, record: Record) -> None:
        super().add(record)
        if record.topic not in self.inputs:
            flow, event = self.topics[record.topic], orjson.loads(record.value)
            self.outcomes[flow][f"{record.topic.rsplit('.', 1)[-1]}:{event['outcome']}"] += 1
            if event["outcome"] == "error":
                self.reasons[flow].add(str(event.get("reason")))


def out(reader: Reader, flow: str, count: int) -> bool:
    seen = reader.seen[flow].count
    return len(seen.inputs) >= count and seen.lost == 0


def latencies_ms(reader: Reader, flow: str, to_completed: bool = False) -> list[float]:
    """From each input's write to its output being read (``to_completed``: to the worker's
    completed_at in the event, without the wait for the transaction's commit and the read)."""
    seen = reader.seen[flow]
    end = seen.first_written if to_completed else seen.visible
    return [(end[lead] - at) * 1000 for lead, at in seen.written.items() if lead in end]


@pytest.mark.timeout(150)
async def test_a_saturated_flow_and_a_failing_one_do_not_slow_another(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = f"iso-{uuid.uuid4().hex[:8]}"
    api_key = f"iso-secret-{uuid.uuid4().hex}"
    slow_faults = replace(NO_FAULTS, slow_share=1.0, slow_for=(SLOW_ANSWER, SLOW_ANSWER))  # every answer
    slow_partner = create_faulty_partner(api_key, slow_faults)
    fast_partner = create_faulty_partner(api_key, NO_FAULTS)
    slow_runner, slow_url = await serve_app(slow_partner)
    fast_runner, fast_url = await serve_app(fast_partner)
    folder = tmp_path / "flows"
    folder.mkdir()
    urls = {SLOW: slow_url, FAST: fast_url, BROKEN: fast_url}
    texts = {flow: [flow_file(prefix, flow, urls[flow])] for flow in FLOWS}
    for flow in FLOWS:
        (folder / f"{flow}.yaml").write_text(texts[flow][0].text)
    args = ["--group-id", prefix, "--allow-loopback", "--max-in-flight", str(CAP)]
    args += ["--commit-interval", str(COMMIT_INTERVAL)]
    process = WorkerProcess(folder, kafka_bootstrap, free_port(), tmp_path / "worker.log",
                            {"PARTNER_API_KEY": api_key}, args)  # fmt: skip
    worker = Worker(process)
    reader = OutcomeReader(kafka_bootstrap, prefix, texts)
    try:
        process.start()
        for flow in FLOWS:  # the worker creates the topics; all assigned before leads flow
            await until(lambda f=flow: worker.showing(f, owning), STARTUP, f"flow {flow} to start")
        reader.start(120)
        await publish(kafka_bootstrap, f"{prefix}.{SLOW}.input", leads(SLOW_LEADS, f"{prefix}-{SLOW}"))
        saturated = lambda f: f is not None and f["in_flight"] >= CAP  # noqa: E731
        await until(lambda: worker.showing(SLOW, saturated), 30, f"{SLOW} to reach its cap")
        began = time.time()
        paced = {f"{prefix}.{flow}.input": leads(PACED, f"{prefix}-{flow}") for flow in (FAST, BROKEN)}
        await publish_paced(kafka_bootstrap, paced, RATE, Counter())
        await wait_for(lambda: out(reader, FAST, PACED) and out(reader, BROKEN, PACED), 30,
                       f"every lead of {FAST} and {BROKEN}")  # fmt: skip
        fast_done = time.time()
        slow_out_then = len(reader.seen[SLOW].count.outputs)
        slow_calls_then = slow_partner[STATS].in_flight
        await wait_for(lambda: out(reader, SLOW, SLOW_LEADS), 4 * SLOW_ANSWER + 30, f"every lead of {SLOW}")
        slow_done = time.time()
        await until(lambda: reader.settled(prefix), 60, "the group to commit everything")
        broken_enriched = sum((await end_offsets(kafka_bootstrap, [f"{prefix}.{BROKEN}.enriched"])).values())
    finally:
        await reader.stop()
        exit_code = process.stop()
        await asyncio.gather(slow_runner.cleanup(), fast_runner.cleanup())
    fast_ms = latencies_ms(reader, FAST)
    fast = percentiles_ms(fast_ms)
    counts = {flow: reader.seen[flow].count for flow in FLOWS}
    line = (
        f"flow_isolation: FAST p50={fast['p50']:.0f}ms p95={fast['p95']:.0f}ms max={max(fast_ms):.0f}ms "
        f"(p95 to completed_at {percentiles_ms(latencies_ms(reader, FAST, True))['p95']:.0f}ms) "
        f"done_after={fast_done - began:.1f}s; SLOW out={slow_out_then}/{SLOW_LEADS} and "
        f"{slow_calls_then} calls in flight when FAST was done, max_in_flight_at_partner="
        f"{slow_partner[STATS].max_in_flight}, drained_after={slow_done - began:.1f}s; "
        f"BROKEN {dict(reader.outcomes[BROKEN])} {sorted(reader.reasons[BROKEN])[:2]}; "
        + " ".join(
            f"{flow}:lost={c.lost},duplicates={c.duplicates}{c.sample()}" for flow, c in counts.items()
        )
        + f" worker_exit={exit_code}"
    )
    print(line)
    # SLOW was saturated while FAST ran: its cap reached and held, its backlog not drained.
    assert slow_partner[STATS].max_in_flight == CAP and slow_out_then < SLOW_LEADS, line
    # FAST never waited for SLOW's partner, and was done a round of it before SLOW's backlog.
    assert fast["p95"] < FAST_P95_MS and max(fast_ms) < FAST_MAX_MS, line
    assert slow_done - fast_done >= SLOW_ANSWER, line
    # BROKEN's leads failed on their template, each to its errors topic.
    assert dict(reader.outcomes[BROKEN]) == {"errors:error": PACED} and broken_enriched == 0, line
    assert all("template error" in why and "lead.x.y.z" in why for why in reader.reasons[BROKEN]), line
    assert reader.outcomes[FAST]["errors:error"] == 0 and reader.outcomes[SLOW]["errors:error"] == 0, line
    # Every lead of every flow written once, by the version the worker said it ran.
    assert all(c.lost == 0 and c.duplicates == 0 for c in counts.values()), line
    assert not reader.seen[FAST].mismatched and not reader.seen[SLOW].mismatched, line
    assert exit_code == 0, line
