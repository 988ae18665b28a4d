"""`make reliability`: fault injection on the real broker, ending with one line per
scenario and `reliability: in=N out=N lost=0 duplicates=D`.

Scenarios: partner faults (5xx, timeouts, resets, 429 bursts) while the worker is
killed with SIGKILL several times and the broker is restarted once; two workers in
one group sharing a rate limit; fuzzed bad inputs; secrets never leaving the run.
Needs LEADSTREAMS_BOOTSTRAP and LEADSTREAMS_KAFKA_STATE (deploy/kafka/with-kafka.sh).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import logging
import math
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka.admin import AIOKafkaAdminClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faulty_partner import STATS, Faults, create_faulty_partner

from agents.kafka_io import Record, collect, ensure_topics, publish
from agents.process import ROOT, WorkerProcess, free_port, serve_app, wait_for
from streams.delayed import tier_topics
from streams.loader import load_flow

FLOW = Path(__file__).resolve().parent / "flow.yaml"
PARTITIONS = 4
MAX_LEAD = 256 * 1024  # below Kafka's default 1 MB message limit, so oversized leads can be sent


@dataclass(frozen=True)
class Sizes:
    leads: int = 20_000
    kills: int = 3
    fuzz: int = 10_000
    shared_leads: int = 3_000
    rate: int = 400  # partner limit, requests/s, for the whole group
    shared_rate: int = 200
    deadline: float = 900.0

    @classmethod
    def small(cls) -> Sizes:
        return cls(
            leads=1_500, kills=1, fuzz=1_000, shared_leads=600, rate=300, shared_rate=150, deadline=300
        )


@dataclass
class Run:
    """One worker group on its own topics, against one partner."""

    bootstrap: str
    workdir: Path
    rate: int
    faults: Faults
    workers: int = 1
    verbose: bool = False
    prefix: str = field(default_factory=lambda: f"rel-{uuid.uuid4().hex[:8]}")
    api_key: str = field(default_factory=lambda: f"rel-secret-{uuid.uuid4().hex}")
    processes: list[WorkerProcess] = field(default_factory=list)

    @functools.cached_property
    def topics(self) -> list[str]:
        """Input, enriched, errors, then the retry tiers (the flow file is parsed once)."""
        flow = load_flow(FLOW, self.env("http://127.0.0.1:1"))
        assert flow.delayed_retry is not None and flow.topics.retry
        tiers = tier_topics(flow.topics.retry, flow.delayed_retry).values()
        return [flow.topics.input, flow.topics.enriched, flow.topics.errors, *tiers]

    def env(self, partner_url: str) -> dict[str, str]:
        return {"PARTNER_URL": partner_url, "PARTNER_API_KEY": self.api_key, "PARTNER_ALLOW_LOOPBACK": "true",
                "RELIABILITY_TOPIC": self.prefix, "PARTNER_RATE_LIMIT": f"{self.rate}/s"}  # fmt: skip

    async def start(self, partner_url: str) -> None:
        await ensure_topics(self.bootstrap, self.topics, PARTITIONS)
        for index in range(self.workers):
            worker = WorkerProcess(
                FLOW, self.bootstrap, free_port(), self.workdir / f"{self.prefix}-worker{index}.log",
                env=self.env(partner_url), args=worker_args(self.prefix, self.verbose),
            )  # fmt: skip
            worker.start()
            self.processes.append(worker)

    def stop(self) -> None:
        for worker in self.processes:
            worker.stop()


@dataclass
class Tally:
    """Inputs and final outputs (enriched + errors), matched by the input's partition/offset."""

    inputs: set[tuple[int, int]] = field(default_factory=set)
    outputs: Counter[tuple[int, int]] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    records: list[Record] = field(default_factory=list)
    without_reason: int = 0  # error events must say why

    def add(self, record: Record, input_topic: str, final_topics: set[str]) -> None:
        self.records.append(record)
        if record.topic == input_topic:
            self.inputs.add((record.partition, record.offset))
        elif record.topic in final_topics:
            event = orjson.loads(record.value)
            self.outputs[(event["input"]["partition"], event["input"]["offset"])] += 1
            self.without_reason += event["outcome"] == "error" and not event.get("reason")
            self.outcomes[f"{record.topic.rsplit('.', 1)[-1]}:{event['outcome']}"] += 1

    def accounted(self, expected: int) -> bool:
        return len(self.inputs) >= expected and self.inputs <= set(self.outputs)

    @property
    def lost(self) -> int:
        return len(self.inputs - set(self.outputs))

    @property
    def duplicates(self) -> int:
        return sum(count - 1 for count in self.outputs.values() if count > 1)


def worker_args(group: str, verbose: bool = False) -> list[str]:
    args = ["--group-id", group, "--partitions", str(PARTITIONS), "--max-lead-bytes", str(MAX_LEAD)]
    return args + (["--loglevel", "debug", "--log-bodies"] if verbose else [])


def leads(count: int, tag: str) -> list[tuple[bytes, bytes]]:
    rng = random.Random(tag)
    out = []
    for index in range(count):
        lead_id = f"{tag}-{index}"
        domain = "spam.example" if rng.random() < 0.1 else "mail.example"
        lead = {"id": lead_id, "email": f"u{index}@{domain}", "phone": f"555-{rng.randint(1000, 9999)}"}
        out.append((lead_id.encode(), orjson.dumps(lead)))
    return out


def fuzzed_inputs(count: int, seed: int = 5) -> list[bytes]:
    """Messages that are never usable leads, of every kind."""
    rng = random.Random(seed)
    makers = [
        lambda: bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64))) + b"\xff",  # binary, not UTF-8
        lambda: b'{"email": "x@y.z", "phone": ' + str(rng.random()).encode(),  # truncated JSON
        lambda: orjson.dumps([rng.random() for _ in range(rng.randint(0, 5))]),  # array
        lambda: orjson.dumps("lead " * rng.randint(1, 5)),  # string
        lambda: rng.choice([b"null", b"true", b"42", b"", b" ", b"{", b"}"]),
        lambda: b"[" * 40 + b"]" * 40,  # deep array
        lambda: b'{"a":' * 40 + b"1" + b"}" * 40,  # object nested past the depth limit
        lambda: orjson.dumps({"id": {"not": "a string"}, "email": "x@y.z"}),  # unusable id
    ]
    oversized = b'{"id": "big", "pad": "' + b"x" * (MAX_LEAD + 1) + b'"}'  # over the worker's limit
    # One in 97 is oversized (a few dozen MB in all), the rest rotate through the kinds above.
    return [makers[index % len(makers)]() if index % 97 else oversized for index in range(count)]


async def track(run: Run, expected: int, deadline: float, tally: Tally) -> None:
    topics = run.topics
    final = {topics[1], topics[2]}

    def done(_: list[Record]) -> bool:
        return tally.accounted(expected)

    await collect(run.bootstrap, topics, done, deadline, on_record=lambda r: tally.add(r, topics[0], final))


async def scenario_faults(bootstrap: str, state: str, workdir: Path, sizes: Sizes) -> tuple[str, Run, Tally]:
    """Partner faults; SIGKILL the worker `kills` times; restart the broker once."""
    run = Run(bootstrap, workdir, sizes.rate, Faults())
    partner = create_faulty_partner(run.api_key, run.faults)
    runner, url = await serve_app(partner)
    tally = Tally()
    try:
        await run.start(url)
        tracking = asyncio.ensure_future(track(run, sizes.leads, sizes.deadline, tally))
        await publish(bootstrap, run.topics[0], leads(sizes.leads, run.prefix))
        worker = run.processes[0]
        for kill in range(1, sizes.kills + 1):
            share = kill * sizes.leads / (sizes.kills + 2)
            await wait_for(
                lambda s=share: sum(tally.outputs.values()) >= s, 300, f"outputs before kill {kill}"
            )
            worker.kill()
            worker.start()
        await wait_for(lambda: sum(tally.outputs.values()) >= sizes.leads * 0.8, 300, "80% of the outputs")
        restart = await asyncio.to_thread(
            subprocess.run, [str(ROOT / "deploy/kafka/restart.sh"), state], capture_output=True, text=True
        )
        if restart.returncode:
            raise RuntimeError(f"broker restart failed: {restart.stderr}")
        await tracking
        alive = worker.alive
    finally:
        run.stop()
        await runner.cleanup()
    stats = partner[STATS]
    peak = max(stats.per_second.values(), default=0)
    line = (
        f"faults: in={len(tally.inputs)} out={len(set(tally.outputs))} lost={tally.lost} "
        f"errors_without_reason={tally.without_reason} "
        f"duplicates={tally.duplicates} kills={sizes.kills} broker_restarts=1 worker_alive={alive} "
        f"max_rps={peak} limit={sizes.rate} partner={dict(stats.outcomes)} outcomes={dict(tally.outcomes)}"
    )
    ok = tally.lost == 0 and tally.without_reason == 0 and peak <= math.ceil(sizes.rate) and alive
    return ("" if ok else "FAILED ") + line, run, tally


async def scenario_shared_limit(bootstrap: str, workdir: Path, sizes: Sizes) -> tuple[str, Run, Tally]:
    """Two workers in one group: together they stay under the integration's limit."""
    # Debug logs with bodies: the secrets scan then reads every request the workers made.
    run = Run(bootstrap, workdir, sizes.shared_rate, Faults(0, 0, 0, 0), workers=2, verbose=True)
    partner = create_faulty_partner(run.api_key, run.faults)
    runner, url = await serve_app(partner)
    tally = Tally()
    try:
        await run.start(url)
        await until_group_has(bootstrap, run.prefix, members=2)
        started = time.monotonic()
        tracking = asyncio.ensure_future(track(run, sizes.shared_leads, sizes.deadline, tally))
        await publish(bootstrap, run.topics[0], leads(sizes.shared_leads, run.prefix))
        await tracking
        elapsed = time.monotonic() - started
    finally:
        run.stop()
        await runner.cleanup()
    per_second = partner[STATS].per_second
    peak = max(per_second.values(), default=0)
    busy = sorted(per_second.items())[1:-1]  # whole seconds only
    mean = sum(v for _, v in busy) / len(busy) if busy else 0.0
    line = (
        f"shared_limit: workers=2 in={len(tally.inputs)} lost={tally.lost} max_rps={peak} "
        f"mean_rps={mean:.0f} limit={sizes.shared_rate} elapsed={elapsed:.1f}s"
    )
    # Together under the limit in every second, and close to it on average.
    ok = tally.lost == 0 and peak <= sizes.shared_rate and mean >= 0.8 * sizes.shared_rate
    return ("" if ok else "FAILED ") + line, run, tally


async def scenario_fuzz(bootstrap: str, workdir: Path, sizes: Sizes) -> tuple[str, Run, Tally]:
    """Unusable inputs all land on the errors topic with their raw bytes; the worker lives."""
    run = Run(bootstrap, workdir, sizes.rate, Faults(0, 0, 0, 0))
    partner = create_faulty_partner(run.api_key, run.faults)
    runner, url = await serve_app(partner)
    tally = Tally()
    payloads = fuzzed_inputs(sizes.fuzz)
    try:
        await run.start(url)
        tracking = asyncio.ensure_future(track(run, sizes.fuzz, sizes.deadline, tally))
        await publish(bootstrap, run.topics[0], ((None, payload) for payload in payloads))
        await tracking
        alive = run.processes[0].alive
    finally:
        run.stop()
        await runner.cleanup()
    inputs = {(r.partition, r.offset): r.value for r in tally.records if r.topic == run.topics[0]}
    preserved = 0
    for record in tally.records:
        if record.topic == run.topics[2]:
            event = orjson.loads(record.value)
            source = (event["input"]["partition"], event["input"]["offset"])
            preserved += event.get("lead") is None and base64.b64decode(event["raw"]) == inputs.get(source)
    on_errors = tally.outcomes.get("errors:error", 0)
    line = (
        f"fuzz: in={len(tally.inputs)} errors={on_errors} raw_preserved={preserved} lost={tally.lost} "
        f"worker_alive={alive}"
    )
    ok = tally.lost == 0 and preserved == len(payloads) and on_errors == len(payloads) and alive
    return ("" if ok else "FAILED ") + line, run, tally


def scenario_secrets(runs: list[tuple[Run, Tally]], broker_log: Path | None = None) -> str:
    """Every message of every topic, every worker log and the broker's log, searched for every secret."""
    hits = scanned = log_bytes = 0
    broker = broker_log.read_bytes() if broker_log and broker_log.exists() else b""
    log_bytes += len(broker)
    hits += sum(broker.count(run.api_key.encode()) for run, _ in runs)
    for run, tally in runs:
        secret = run.api_key.encode()
        for record in tally.records:
            scanned += 1
            hits += secret in record.value or secret in (record.key or b"")
        for worker in run.processes:
            text = worker.log_path.read_bytes() if worker.log_path.exists() else b""
            log_bytes += len(text)
            hits += text.count(secret)
    return ("" if hits == 0 else "FAILED ") + f"secrets: messages={scanned} log_bytes={log_bytes} hits={hits}"


async def until_group_has(bootstrap: str, group: str, members: int, timeout: float = 90) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            described = await admin.describe_consumer_groups([group])
            found = described[0].groups[0] if described and described[0].groups else None
            if found and found[2] == "Stable" and len(found[5]) >= members:
                return
            await asyncio.sleep(0.5)
        raise TimeoutError(f"group {group} did not reach {members} members")
    finally:
        await admin.close()


async def run_all(bootstrap: str, state: str, sizes: Sizes, workdir: Path) -> tuple[list[str], bool]:
    lines: list[str] = []
    runs: list[tuple[Run, Tally]] = []
    for scenario in (
        lambda: scenario_faults(bootstrap, state, workdir, sizes),
        lambda: scenario_shared_limit(bootstrap, workdir, sizes),
        lambda: scenario_fuzz(bootstrap, workdir, sizes),
    ):
        started = time.monotonic()
        line, run, tally = await scenario()
        lines.append(f"{line} ({time.monotonic() - started:.0f}s)")
        print(lines[-1], flush=True)
        runs.append((run, tally))
    lines.append(scenario_secrets(runs, Path(state) / "broker.log"))
    print(lines[-1], flush=True)
    total_in = sum(len(t.inputs) for _, t in runs)
    total_out = sum(len(set(t.outputs)) for _, t in runs)
    lost = sum(t.lost for _, t in runs)
    duplicates = sum(t.duplicates for _, t in runs)
    lines.append(f"reliability: in={total_in} out={total_out} lost={lost} duplicates={duplicates}")
    print(lines[-1], flush=True)
    return lines, not any(line.startswith("FAILED") for line in lines) and lost == 0


def main() -> None:
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # the resets we inject on purpose
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", action="store_true", help="the smaller sizes `make test` uses")
    args = parser.parse_args()
    bootstrap, state = os.environ.get("LEADSTREAMS_BOOTSTRAP"), os.environ.get("LEADSTREAMS_KAFKA_STATE")
    if not bootstrap or not state:
        sys.exit("run through `make reliability` (needs LEADSTREAMS_BOOTSTRAP and LEADSTREAMS_KAFKA_STATE)")
    workdir = Path(tempfile.mkdtemp(prefix="leadstreams-reliability-"))
    print(f"worker logs in {workdir}", flush=True)
    _, ok = asyncio.run(run_all(bootstrap, state, Sizes.small() if args.small else Sizes(), workdir))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
