"""`make reliability`: fault injection on the real broker, ending with one line per
scenario and `reliability: in=N out=N lost=0 duplicates=D`.

Scenarios: faults: partner faults (5xx, timeouts, resets, 429 bursts) while the worker
is killed with SIGKILL several times and the broker is restarted once; slow_kills: a
few leads answered only after 1-20 s, the worker killed whenever one of them is at the
head of its partition with later leads written, and the broker restarted once;
shared_limit: two workers in one group sharing a rate limit; fuzz: fuzzed bad inputs;
secrets never leaving the run. While waiting, a progress line every 10 s on stderr.
The whole output is kept in the work dir with the worker logs.
Needs LEADSTREAMS_BOOTSTRAP and LEADSTREAMS_KAFKA_STATE (deploy/kafka/with-kafka.sh).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
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
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import orjson
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[2]))  # the repository, for examples.support
from faulty_partner import STATS, Faults, Stats, create_faulty_partner
from partner_process import PartnerProcess, RateSeen, cpu_hogs

from agents.kafka_connection import KafkaConnection
from agents.kafka_io import Kafka, Record, collect, committed_offsets, end_offsets, ensure_topics, publish
from examples.support.process import ROOT, WorkerProcess, free_port, serve_app, wait_for
from streams.delayed import tier_topics
from streams.loader import load_flow

FLOW = Path(__file__).resolve().parent / "flow.yaml"
SLOW_FLOW = Path(__file__).resolve().parent / "slow_flow.yaml"
PARTITIONS = 4
MAX_LEAD = 256 * 1024  # below Kafka's default 1 MB message limit, so oversized leads can be sent
# s a slow lead stays at the head of its partition, once the group's commit reached it,
# before the kill: past Faust's 2.8 s commit interval, so the next commit has been made,
# and a rule that commits past an unfinished lead has done so.
HELD_AT_HEAD = 2.8 + 0.7
PROGRESS_EVERY = 10.0  # s between progress lines
STALL = 5.0  # s without an output (and no partner call) before the run asks whether all is committed


@dataclass(frozen=True)
class Sizes:
    leads: int = 20_000
    kills: int = 3
    fuzz: int = 10_000
    shared_leads: int = 3_000
    rate: int = 400  # partner limit, requests/s, for the whole group
    shared_rate: int = 200
    slow_leads: int = 15_000
    slow_kills: int = 3
    slow_rate: int = 200
    slow_share: float = 0.04  # leads answered after 1-20 s
    recovery_bound: float = 10.0  # s from a worker's restart to its first output
    deadline: float = 900.0
    loaded_leads: int = 8_000  # per worker count (1, then 2), with `hogs` busy processes beside
    loaded_rate: int = 400
    hogs: int = 2

    @classmethod
    def small(cls) -> Sizes:
        return cls(
            leads=1_500, kills=1, fuzz=1_000, shared_leads=600, rate=300, shared_rate=150,
            slow_leads=2_000, slow_kills=1, slow_rate=100, recovery_bound=30, deadline=300,
            loaded_leads=1_500, loaded_rate=300,
        )  # fmt: skip


@dataclass
class Run:
    """One worker group on its own topics, against one partner."""

    bootstrap: str
    workdir: Path
    rate: int
    faults: Faults
    workers: int = 1
    verbose: bool = False
    flow: Path = FLOW
    loglevel: str = "warning"
    prefix: str = field(default_factory=lambda: f"rel-{uuid.uuid4().hex[:8]}")
    api_key: str = field(default_factory=lambda: f"rel-secret-{uuid.uuid4().hex}")
    processes: list[WorkerProcess] = field(default_factory=list)
    kafka_config: Path | None = None  # a client properties file: the run's Kafka is a secured listener

    @functools.cached_property
    def kafka(self) -> Kafka:
        """How the driver and the workers reach Kafka."""
        if self.kafka_config is None:
            return self.bootstrap
        return KafkaConnection.resolve({"bootstrap": self.bootstrap}, str(self.kafka_config), environ={})

    @functools.cached_property
    def topics(self) -> list[str]:
        """Input, enriched, errors, then the retry tiers (the flow file is parsed once)."""
        flow = load_flow(self.flow, self.env("http://127.0.0.1:1"))
        retry, delayed = flow.topics.retry, flow.delayed_retry
        tiers = tier_topics(retry, delayed).values() if retry and delayed else []
        return [flow.topics.input, flow.topics.enriched, flow.topics.errors, *tiers]

    @property
    def consumed(self) -> set[str]:
        """The topics the group reads: the input and the retry tiers."""
        return {self.topics[0], *self.topics[3:]}

    def env(self, partner_url: str) -> dict[str, str]:
        return {"PARTNER_URL": partner_url, "PARTNER_API_KEY": self.api_key, "PARTNER_ALLOW_LOOPBACK": "true",
                "RELIABILITY_TOPIC": self.prefix, "PARTNER_RATE_LIMIT": f"{self.rate}/s"}  # fmt: skip

    async def start(self, partner_url: str) -> None:
        await ensure_topics(self.kafka, self.topics, PARTITIONS)
        secured = ["--kafka-config", str(self.kafka_config)] if self.kafka_config else []
        for index in range(self.workers):
            worker = WorkerProcess(
                self.flow, self.bootstrap, free_port(), self.workdir / f"{self.prefix}-worker{index}.log",
                env=self.env(partner_url),
                args=worker_args(self.prefix, index, self.verbose, self.loglevel) + secured,
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
    keys: dict[bytes, tuple[int, int]] = field(default_factory=dict)  # input key -> partition/offset
    # Per input partition, in arrival order: (the output's Kafka timestamp in s, input offset).
    arrivals: defaultdict[int, list[tuple[float, int]]] = field(default_factory=lambda: defaultdict(list))
    stamps: list[float] = field(default_factory=list)  # the outputs' Kafka timestamps (s), in arrival order
    last_output: float = 0.0  # time.monotonic() of the last output read
    read_to: dict[tuple[str, int], int] = field(default_factory=dict)  # next offset to read
    settled: dict[tuple[str, int], int] | None = None  # all committed: the output ends to read up to

    def add(self, record: Record, input_topic: str, final_topics: set[str]) -> None:
        self.records.append(record)
        self.read_to[(record.topic, record.partition)] = record.offset + 1
        if record.topic == input_topic:
            self.inputs.add((record.partition, record.offset))
            self.keys[record.key or b""] = (record.partition, record.offset)
        elif record.topic in final_topics:
            event = orjson.loads(record.value)
            source = (event["input"]["partition"], event["input"]["offset"])
            self.outputs[source] += 1
            self.without_reason += event["outcome"] == "error" and not event.get("reason")
            self.outcomes[f"{record.topic.rsplit('.', 1)[-1]}:{event['outcome']}"] += 1
            self.last_output = time.monotonic()
            self.stamps.append(record.timestamp_ms / 1000)
            self.arrivals[source[0]].append((record.timestamp_ms / 1000, source[1]))

    def written_since(self, partition: int, since: float = 0.0) -> int:
        """The highest offset of ``partition`` with an output written since ``since``
        (time.time()), -1 if none."""
        return max((offset for stamp, offset in self.arrivals[partition] if stamp >= since), default=-1)

    def accounted(self, expected: int) -> bool:
        if len(self.inputs) >= expected and self.inputs <= set(self.outputs):
            return True
        ends = self.settled
        return ends is not None and all(self.read_to.get(where, 0) >= end for where, end in ends.items())

    @property
    def lost(self) -> int:
        return len(self.inputs - set(self.outputs))

    @property
    def duplicates(self) -> int:
        return sum(count - 1 for count in self.outputs.values() if count > 1)


@dataclass
class Progress:
    """What a scenario is waiting for: a line on stderr every PROGRESS_EVERY seconds."""

    scenario: str
    expected: int
    tally: Tally
    run: Run
    phase: str = "starting"
    since: float = field(default_factory=time.monotonic)  # when the phase began
    broker_back: float | None = None  # time.time() the broker came back (the line says if no output since)
    events: list[tuple[float, str]] = field(default_factory=lambda: [(time.time(), "start")])

    def enter(self, phase: str) -> None:
        self.phase, self.since = phase, time.monotonic()
        print(self.line(), file=sys.stderr, flush=True)

    def event(self, label: str) -> None:
        """A fault injected now, to say when something happened relative to it."""
        self.events.append((time.time(), label))

    def relative(self, moment: float) -> str:
        """``moment`` (time.time()) as the last event before it + seconds."""
        when, label = max((event for event in self.events if event[0] <= moment), default=self.events[0])
        return f"{label}+{moment - when:.0f}s"

    def line(self) -> str:
        text = (
            f"  [{self.scenario}] out={len(self.tally.outputs)}/{self.expected} "
            f"{self.phase} ({time.monotonic() - self.since:.0f}s)"
        )
        back = self.broker_back
        if back is not None and not any(stamp >= back for stamp in self.tally.stamps[-1000:]):
            text += f"; no output in the {time.time() - back:.0f}s since the broker came back"
        return text

    async def in_kafka(self) -> str:
        """What Kafka holds: outputs written (and how many of them this run read) and inputs
        committed, so a stall shows whether the worker or the run's reader stopped."""
        run, topics = self.run, self.run.topics
        try:
            ends = await asyncio.wait_for(end_offsets(run.kafka, topics[1:3]), 5)
            committed = await asyncio.wait_for(committed_offsets(run.kafka, run.prefix), 5)
        except (TimeoutError, KafkaError, OSError) as exc:
            return f"; Kafka: {type(exc).__name__}"
        read = sum(self.tally.read_to.get(where, 0) for where in ends)
        inputs = sum(offset for (topic, _), offset in committed.items() if topic == topics[0])
        return f"; Kafka: {sum(ends.values())} outputs ({read} read), {inputs} inputs committed"

    def over(self, seen: RateSeen) -> str:
        """The sliding seconds above the bound at the partner, each with the fault before it."""
        over = [f"{count}@{self.relative(moment)}" for moment, count in seen.over]
        return f" over_limit={over}" if over else ""

    @contextlib.asynccontextmanager
    async def reporting(self) -> AsyncIterator[Progress]:
        async def report() -> None:
            while True:
                await asyncio.sleep(PROGRESS_EVERY)  # a periodic report; nothing waits on it
                print(self.line() + await self.in_kafka(), file=sys.stderr, flush=True)

        tasks = [asyncio.ensure_future(report())]
        try:
            yield self
        finally:
            for task in tasks:
                task.cancel()


def worker_args(group: str, index: int, verbose: bool = False, loglevel: str = "warning") -> list[str]:
    """Static membership: worker ``index`` keeps its instance id across restarts."""
    args = ["--group-id", group, "--instance-id", f"{group}-w{index}", "--partitions", str(PARTITIONS),
            "--max-lead-bytes", str(MAX_LEAD), "--loglevel", loglevel]  # fmt: skip
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


async def track(
    run: Run, expected: int, deadline: float, tally: Tally, busy: Callable[[], bool] = lambda: False
) -> None:
    """Read every topic until each input has an output, or until the group has committed
    everything it reads and its outputs are read (a lost lead then ends the run early)."""
    topics = run.topics
    final = {topics[1], topics[2]}

    def done(_: list[Record]) -> bool:
        return tally.accounted(expected)

    watching = asyncio.ensure_future(watch_settled(run, tally, expected, busy))
    try:
        await collect(
            run.kafka, topics, done, deadline, on_record=lambda r: tally.add(r, topics[0], final)
        )
    finally:
        watching.cancel()


async def watch_settled(run: Run, tally: Tally, expected: int, busy: Callable[[], bool]) -> None:
    """Once nothing moves (every input read, no output for STALL seconds, no partner call
    in flight) and the group has committed all it reads, with the same topic ends STALL
    seconds later, ``tally.settled`` holds the output topics' ends: an input still without
    an output then is lost, not late."""
    seen: tuple[float, dict[tuple[str, int], int]] | None = None  # when and what was first seen settled
    while tally.settled is None:
        await asyncio.sleep(1.0)  # polling: Kafka does not announce commits
        if len(tally.inputs) < expected or busy() or time.monotonic() - tally.last_output < STALL:
            seen = None
            continue
        with contextlib.suppress(TimeoutError, KafkaError, OSError):  # the broker may be restarting
            committed = await committed_offsets(run.kafka, run.prefix)
            ends = await end_offsets(run.kafka, run.topics)
            if not all(
                committed.get(where, 0) >= end for where, end in ends.items() if where[0] in run.consumed
            ):
                seen = None
            elif seen is None or seen[1] != ends:
                seen = (time.monotonic(), ends)
            elif time.monotonic() - seen[0] >= STALL:
                tally.settled = {where: end for where, end in ends.items() if where[0] not in run.consumed}


def output_gap(tally: Tally, since: float) -> float | None:
    """Seconds from ``since`` (time.time()) to the first output written after it, by its
    Kafka timestamp (None: none read yet)."""
    first = min((stamp for stamp in tally.stamps if stamp >= since), default=None)
    return None if first is None else round(first - since, 1)


async def time_to_output(tally: Tally, since: float, timeout: float, what: str) -> float:
    """``output_gap`` once the run has read an output written after ``since``."""
    seen: list[float] = []
    cursor = 0

    def written() -> bool:
        nonlocal cursor
        seen.extend(stamp for stamp in tally.stamps[cursor:] if stamp >= since)
        cursor = len(tally.stamps)
        return bool(seen)

    await wait_for(written, timeout, what)
    return round(min(seen) - since, 1)


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


async def scenario_faults(
    bootstrap: str, state: str, workdir: Path, sizes: Sizes, loglevel: str = "warning"
) -> tuple[str, Run, Tally]:
    """Partner faults; SIGKILL the worker `kills` times; restart the broker once."""
    run = Run(bootstrap, workdir, sizes.rate, Faults(), loglevel=loglevel)
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


async def scenario_slow_kills(
    bootstrap: str, state: str, workdir: Path, sizes: Sizes, loglevel: str = "warning"
) -> tuple[str, Run, Tally]:
    """A few leads answered only after 1-20 s; SIGKILL the worker while one of them is at
    the head of its partition and later leads of that partition are written; restart the
    broker once at such a moment too."""
    faults = Faults(0, 0, 0, 0, slow_share=sizes.slow_share)
    run = Run(bootstrap, workdir, sizes.slow_rate, faults, flow=SLOW_FLOW, loglevel=loglevel)
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


async def scenario_fuzz(bootstrap: str, workdir: Path, sizes: Sizes) -> tuple[str, Run, Tally]:
    """Unusable inputs all land on the errors topic with their raw bytes; the worker lives.
    Over the secured listener (SASL_SSL, SCRAM-SHA-512, mutual TLS) when the broker has one,
    so the secrets scan also looks for the Kafka password."""
    secured = os.environ.get("LEADSTREAMS_SECURED_CONFIG_DIR")
    if secured and os.environ.get("LEADSTREAMS_SECURED_BOOTSTRAP"):
        config = Path(secured) / "client-sasl-ssl.properties"
        run = Run(os.environ["LEADSTREAMS_SECURED_BOOTSTRAP"], workdir, sizes.rate, Faults(0, 0, 0, 0),
                  kafka_config=config)  # fmt: skip
    else:
        run = Run(bootstrap, workdir, sizes.rate, Faults(0, 0, 0, 0))
    partner = create_faulty_partner(run.api_key, run.faults)
    runner, url = await serve_app(partner)
    tally = Tally()
    payloads = fuzzed_inputs(sizes.fuzz)
    progress = Progress("fuzz", sizes.fuzz, tally, run)
    try:
        async with progress.reporting():
            await run.start(url)
            tracking = asyncio.ensure_future(track(run, sizes.fuzz, sizes.deadline, tally))
            await publish(run.kafka, run.topics[0], ((None, payload) for payload in payloads))
            progress.enter("waiting for every input to have an output")
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
        f"worker_alive={alive} kafka={KafkaConnection.of(run.kafka).security_protocol}"
    )
    ok = tally.lost == 0 and preserved == len(payloads) and on_errors == len(payloads) and alive
    return ("" if ok else "FAILED ") + line, run, tally


def scenario_secrets(runs: list[tuple[Run, Tally]], broker_log: Path | None = None) -> str:
    """Every message of every topic, every worker log and the broker's log, searched for
    every secret: the partner API keys and the Kafka password of the secured listener."""
    hits = scanned = log_bytes = 0
    kafka_password = os.environ.get("LEADSTREAMS_SECURED_PASSWORD", "").encode()
    secrets = [run.api_key.encode() for run, _ in runs] + ([kafka_password] if kafka_password else [])
    broker = broker_log.read_bytes() if broker_log and broker_log.exists() else b""
    log_bytes += len(broker)
    hits += sum(broker.count(secret) for secret in secrets)
    for run, tally in runs:
        for record in tally.records:
            scanned += 1
            hits += any(secret in record.value or secret in (record.key or b"") for secret in secrets)
        for worker in run.processes:
            text = worker.log_path.read_bytes() if worker.log_path.exists() else b""
            log_bytes += len(text)
            hits += sum(text.count(secret) for secret in secrets)
    line = f"secrets: kinds={'partner keys, Kafka password' if kafka_password else 'partner keys'} "
    return ("" if hits == 0 else "FAILED ") + line + f"messages={scanned} log_bytes={log_bytes} hits={hits}"


async def until_group_has(
    bootstrap: str,
    group: str,
    members: int,
    timeout: float = 90,
    processes: list[WorkerProcess] | None = None,
) -> None:
    """Until the group is stable with ``members``; a worker that exits meanwhile fails it at once."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for worker in processes or []:
                if not worker.alive:
                    raise RuntimeError(f"a worker exited before joining {group}:\n{worker.log_tail()}")
            with contextlib.suppress(KafkaError):  # e.g. no coordinator yet on a fresh broker
                described = await admin.describe_consumer_groups([group])
                found = described[0].groups[0] if described and described[0].groups else None
                if found and found[2] == "Stable" and len(found[5]) >= members:
                    return
            await asyncio.sleep(0.5)
        raise TimeoutError(f"group {group} did not reach {members} members")
    finally:
        await admin.close()


SCENARIOS = ("faults", "slow_kills", "shared_limit", "loaded", "fuzz")


async def run_all(
    bootstrap: str,
    state: str,
    sizes: Sizes,
    workdir: Path,
    only: set[str] | None = None,
    loglevel: str = "warning",
) -> tuple[list[str], bool]:
    """The scenarios (``only`` those named, in their usual order), then the secrets scan."""
    lines: list[str] = []
    runs: list[tuple[Run, Tally]] = []

    async def one(scenario: Awaitable[tuple[str, Run, Tally]]) -> tuple[str, list[tuple[Run, Tally]]]:
        line, run, tally = await scenario
        return line, [(run, tally)]

    scenarios: dict[str, Callable[[], Awaitable[tuple[str, list[tuple[Run, Tally]]]]]] = {
        "faults": lambda: one(scenario_faults(bootstrap, state, workdir, sizes, loglevel)),
        "slow_kills": lambda: one(scenario_slow_kills(bootstrap, state, workdir, sizes, loglevel)),
        "shared_limit": lambda: one(scenario_shared_limit(bootstrap, workdir, sizes)),
        "loaded": lambda: scenario_loaded(bootstrap, workdir, sizes),
        "fuzz": lambda: one(scenario_fuzz(bootstrap, workdir, sizes)),
    }
    for name in SCENARIOS:
        if only is not None and name not in only:
            continue
        print(f"{name}: running", file=sys.stderr, flush=True)
        started = time.monotonic()
        line, done = await scenarios[name]()
        lines.append(f"{line} ({time.monotonic() - started:.0f}s)")
        print(lines[-1], flush=True)
        runs.extend(done)
    lines.append(scenario_secrets(runs, Path(state) / "broker.log"))
    print(lines[-1], flush=True)
    total_in = sum(len(t.inputs) for _, t in runs)
    total_out = sum(len(set(t.outputs)) for _, t in runs)
    lost = sum(t.lost for _, t in runs)
    duplicates = sum(t.duplicates for _, t in runs)
    lines.append(f"reliability: in={total_in} out={total_out} lost={lost} duplicates={duplicates}")
    print(lines[-1], flush=True)
    return lines, not any(line.startswith("FAILED") for line in lines) and lost == 0


class Tee:
    """A text stream that writes to several (the terminal and the run's output file)."""

    def __init__(self, *streams: TextIO) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def main() -> None:
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # the resets we inject on purpose
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # our readers while the broker restarts
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", action="store_true", help="the smaller sizes `make test` uses")
    parser.add_argument(
        "--only", type=lambda text: set(text.split(",")), help=f"comma-separated, of {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--worker-loglevel", default="warning", help="the workers' --loglevel (e.g. info)")
    parser.add_argument("--hogs", type=int, help="busy processes beside the loaded scenario (default 2)")
    args = parser.parse_args()
    if args.only and args.only - set(SCENARIOS):
        parser.error(f"unknown scenario {', '.join(sorted(args.only - set(SCENARIOS)))}")
    bootstrap, state = os.environ.get("LEADSTREAMS_BOOTSTRAP"), os.environ.get("LEADSTREAMS_KAFKA_STATE")
    if not bootstrap or not state:
        sys.exit("run through `make reliability` (needs LEADSTREAMS_BOOTSTRAP and LEADSTREAMS_KAFKA_STATE)")
    workdir = Path(tempfile.mkdtemp(prefix="leadstreams-reliability-"))
    output = (workdir / "run_reliability.out").open("a", buffering=1)
    sys.stdout, sys.stderr = Tee(sys.stdout, output), Tee(sys.stderr, output)  # type: ignore[assignment]
    print(f"work dir (worker logs; this output in {output.name}): {workdir}", flush=True)
    sizes = Sizes.small() if args.small else Sizes()
    if args.hogs is not None:
        sizes = dataclasses.replace(sizes, hogs=args.hogs)
    _, ok = asyncio.run(run_all(bootstrap, state, sizes, workdir, args.only, args.worker_loglevel))
    if not ok:
        print(f"FAILED; the work dir is kept: {workdir}", flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
