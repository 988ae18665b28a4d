"""The `many_flows` scenario of `make reliability` (issue 19, "Measured"); at a small size
the broker test tests/integration/test_many_flows_on_kafka.py.

Three flows (a, b, c) in one directory, one worker (``leadstreams worker DIR``, its default
exactly-once), the partner in a process of its own answering every request, and leads
published to the three input topics side by side at a steady rate. While they flow, a's
file is changed three times (v2, an invalid v3, v4: each version its own step name and
mapped field, so an event shows which version ran it), b's file is removed and written
again once more of its leads were published, c is left alone. Every change is awaited on
``GET /flows``. Then, by lead id with a read_committed reader: every lead of every flow
once; every event's ``flow_version`` is the hash of the text whose step and field it
carries; the invalid text never ran and its rejection (``FILE:LINE``) was on /flows and in
the log. c's latency, from its input's write to its output being readable read_committed (a
stall of c's processing or of the worker's shared transaction shows in it), for leads
written during each change (+-WINDOW s) against the others.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from aiokafka import AIOKafkaProducer
from exactly_once import ByLead
from faulty_partner import Faults
from group_run import leads
from partner_process import PartnerProcess

from agents.kafka_connection import KafkaConnection
from agents.kafka_io import Kafka, Record, collect, committed_offsets, end_offsets
from examples.bench.stats import percentiles_ms
from examples.support.process import WorkerProcess, free_port, wait_for
from streams.loader import content_hash

FLOWS = ("a", "b", "c")
WINDOW = 3.0  # s around a change in which c's leads count as written "during" it
NO_FAULTS = Faults(server_errors=0, timeouts=0, resets=0, burst_every=0)
CHANGE_TIMEOUT = 90.0  # s for /flows to show a change (b's start waits for a rebalance)


@dataclass(frozen=True)
class Size:
    leads: int  # per flow
    rate: float  # leads per second, per flow
    # Bound on c's p95 latency during a change: the p95 outside changes + this (ms). A
    # stall of several seconds in any change's window would exceed it.
    stall_ms: float = 2000.0
    deadline: float = 600.0  # s for the whole run

    @classmethod
    def full(cls) -> Size:
        return cls(leads=10_000, rate=100)

    @classmethod
    def small(cls) -> Size:
        return cls(leads=1_000, rate=40, deadline=240)


# -- the flow files -------------------------------------------------------------------


@dataclass(frozen=True)
class Version:
    """One text of a flow's file: the step name and the mapped field that show it ran."""

    flow: str
    label: str  # v1, v2, ...
    text: str
    valid: bool = True

    @property
    def hash(self) -> str:
        return content_hash(self.text)

    @property
    def step(self) -> str:
        return f"check_{self.flow}_{self.label}"

    @property
    def field(self) -> str:
        return f"score_{self.flow}_{self.label}"


def flow_text(prefix: str, flow: str, label: str, valid: bool = True) -> str:
    """A flow of one POST to the partner, its step and mapped field named after ``label``;
    not ``valid``: a schema error (a timeout that is no duration) on a line of its own."""
    step, mapped = f"check_{flow}_{label}", f"score_{flow}_{label}"
    document: dict[str, Any] = {
        "version": 1,
        "name": flow,
        "topics": {kind: f"{prefix}.{flow}.{kind}" for kind in ("input", "enriched", "errors")},
        "settings": {"api_key": "${PARTNER_API_KEY}"},
        "integrations": {
            "partner": {
                "base_url": "${PARTNER_URL}",
                "concurrency": 50,
                "timeout": "2s" if valid else "two seconds",
                "auth": {"type": "api_key", "header": "X-API-Key", "value": "{{ settings.api_key }}"},
            }
        },
        "steps": [
            {
                "name": step,
                "integration": "partner",
                "request": {
                    "method": "POST",
                    "url": "/check",
                    "json": {"email": "{{ lead.email }}", "phone": "{{ lead.phone | digits }}"},
                },
                "map": {mapped: "{{ response.risk_score }}"},
            }
        ],
    }
    return yaml.safe_dump(document, sort_keys=False)


def versions(prefix: str) -> dict[str, list[Version]]:
    """Every text each flow's file has in the run, in order (a: v1, v2, invalid v3, v4)."""
    a = [Version("a", label, flow_text(prefix, "a", label, label != "v3"), label != "v3")
         for label in ("v1", "v2", "v3", "v4")]  # fmt: skip
    return {"a": a, **{flow: [Version(flow, "v1", flow_text(prefix, flow, "v1"))] for flow in ("b", "c")}}


def write_file(path: Path, text: str) -> None:
    """Whole or not at all: written beside, then renamed over (the watcher never reads half)."""
    beside = path.parent.parent / f".{path.name}.{uuid.uuid4().hex[:6]}"
    beside.write_text(text)
    os.replace(beside, path)


# -- reading the outputs --------------------------------------------------------------


@dataclass
class FlowSeen:
    """One flow's inputs and outputs by lead id, and what each event says about its version."""

    count: ByLead = field(default_factory=ByLead)
    written: dict[str, float] = field(default_factory=dict)  # lead id -> its input's CreateTime (s)
    visible: dict[str, float] = field(default_factory=dict)  # lead id -> time.time() its output was read
    versions: Counter[str] = field(default_factory=Counter)  # flow_version -> events
    mismatched: list[str] = field(default_factory=list)  # events whose content is not their version's
    # lead id -> where each of its outputs is and the input it was read from (a duplicate's story)
    outputs_at: dict[str, list[str]] = field(default_factory=dict)
    first_written: dict[str, float] = field(
        default_factory=dict
    )  # lead id -> its first output's completed_at

    def add_output(self, record: Record, event: dict[str, Any], ran: dict[str, Version]) -> None:
        lead = str(event["id"])
        self.count.outputs[lead] += 1
        source = event["input"]
        self.outputs_at.setdefault(lead, []).append(
            f"{record.partition}:{record.offset} (input {source['partition']}:{source['offset']}, "
            f"{event['flow_version']}, completed {event['completed_at']})"
        )
        self.visible.setdefault(lead, time.time())
        self.first_written.setdefault(lead, datetime.fromisoformat(event["completed_at"]).timestamp())
        self.versions[event["flow_version"]] += 1
        version = ran.get(event["flow_version"])
        steps = [step["name"] for step in event["steps"]]
        fields = {name for name in event.get("lead") or {} if name.startswith("score_")}
        if version is None or steps != [version.step] or fields != {version.field}:
            self.mismatched.append(f"{lead}: version {event['flow_version']} steps={steps} fields={fields}")


class Reader:
    """Every topic of the run from the beginning, read_committed (agents.kafka_io.collect)."""

    def __init__(self, kafka: Kafka, prefix: str, texts: dict[str, list[Version]]) -> None:
        self.kafka = kafka
        self.topics = {
            f"{prefix}.{flow}.{kind}": flow for flow in FLOWS for kind in ("input", "enriched", "errors")
        }
        self.inputs = {f"{prefix}.{flow}.input" for flow in FLOWS}
        self.seen = {flow: FlowSeen() for flow in FLOWS}
        self.ran = {flow: {v.hash: v for v in texts[flow] if v.valid} for flow in FLOWS}
        self.positions: dict[tuple[str, int], int] = {}
        self.done = False
        self.task: asyncio.Future[list[Record]] | None = None

    def start(self, timeout: float) -> None:
        self.task = asyncio.ensure_future(collect(self.kafka, list(self.topics), lambda _: self.done, timeout,
                                                  on_record=self.add, positions=self.positions))  # fmt: skip

    def add(self, record: Record) -> None:
        seen = self.seen[self.topics[record.topic]]
        lead = (record.key or b"").decode()
        if record.topic in self.inputs:
            seen.count.inputs.add(lead)
            seen.written[lead] = record.timestamp_ms / 1000
        else:
            flow = self.topics[record.topic]
            seen.add_output(record, orjson.loads(record.value), self.ran[flow])

    def twice(self, most: int = 2) -> list[str]:
        """A few leads written more than once, with where each output is."""
        return [
            f"{flow}/{lead}: {seen.outputs_at[lead]}"
            for flow, seen in self.seen.items()
            for lead, count in seen.count.outputs.most_common(most)
            if count > 1
        ]

    def all_out(self, expected: int) -> bool:
        return all(len(s.count.inputs) >= expected and s.count.lost == 0 for s in self.seen.values())

    async def settled(self, group: str) -> str:
        """'' once nothing more can come: the group committed every input, no transaction is
        open on the outputs, this reader is at their ends; else what is not there yet."""
        inputs = sorted(self.inputs)
        committed = await committed_offsets(self.kafka, group)
        for where, end in (await end_offsets(self.kafka, inputs)).items():
            if committed.get(where, 0) < end:
                return f"group committed {where} at {committed.get(where, 0)} of {end}"
        outputs = [topic for topic in self.topics if topic not in self.inputs]
        stable = await end_offsets(self.kafka, outputs)
        if stable != await end_offsets(self.kafka, outputs, stable=False):
            return "a transaction is open"
        behind = [where for where, end in stable.items() if self.positions.get(where, 0) < end]
        return f"reader behind on {behind[:3]}" if behind else ""

    async def stop(self) -> None:
        self.done = True
        if self.task is not None:
            await self.task


# -- the run ----------------------------------------------------------------------------


async def publish_paced(kafka: Kafka, batches: dict[str, list[tuple[bytes, bytes]]], rate: float,
                        sent: Counter[str]) -> None:  # fmt: skip
    """Each topic's messages at ``rate`` per second, the topics side by side, from one
    producer (kafka_io.publish sends a whole list at once; a steady pace needs sends over time)."""
    producer = AIOKafkaProducer(**KafkaConnection.of(kafka).client_options(), acks="all", linger_ms=5)
    await producer.start()
    try:
        started = time.monotonic()
        for index in range(max(len(messages) for messages in batches.values())):
            await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))  # the pace
            for topic, messages in batches.items():
                key, value = messages[index]
                await producer.send(topic, value, key=key)
                sent[topic] += 1
        await producer.flush()
    finally:
        await producer.stop()


async def until(check: Callable[[], Awaitable[str]], timeout: float, what: str) -> None:
    """Until ``check`` answers '' (else it says what is missing); TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while missing := await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}: {missing}")
        await asyncio.sleep(0.2)  # polling: neither /flows nor Kafka announce changes


@dataclass
class Change:
    label: str
    started: float  # time.time() the file was written or removed
    seen: float = 0.0  # time.time() /flows showed it

    @property
    def seconds(self) -> float:
        return round(self.seen - self.started, 1)


class Worker:
    """The worker process and its /flows."""

    def __init__(self, process: WorkerProcess) -> None:
        self.process = process
        self.base = f"http://127.0.0.1:{process.web_port}"
        self.last: dict[str, Any] = {}  # the last /flows answer

    async def get(self, path: str) -> str:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(self.base + path) as answer:
            answer.raise_for_status()
            return await answer.text()

    def flow(self, name: str) -> dict[str, Any] | None:
        return next((f for f in self.last.get("flows", []) if f["name"] == name), None)

    async def showing(self, name: str, expect: Callable[[dict[str, Any] | None], bool]) -> str:
        """'' once /flows shows flow ``name`` as ``expect`` wants it."""
        if not self.process.alive:
            raise RuntimeError(f"the worker exited:\n{self.process.log_tail()}")
        try:
            self.last = orjson.loads(await self.get("/flows"))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:  # not listening yet
            return f"/flows: {type(exc).__name__}"
        return "" if expect(self.flow(name)) else f"{name}: {self.flow(name)}"

    async def change(self, label: str, act: Callable[[], None], name: str,
                     expect: Callable[[dict[str, Any] | None], bool]) -> Change:  # fmt: skip
        print(f"  [many_flows] {label}", file=sys.stderr, flush=True)
        change = Change(label, time.time())
        act()
        await until(lambda: self.showing(name, expect), CHANGE_TIMEOUT, f"/flows to show {label}")
        change.seen = time.time()
        return change


def running(version: str) -> Callable[[dict[str, Any] | None], bool]:
    return lambda f: (
        f is not None and f["version"] == version and f["state"] == "running" and not f["problems"]
    )


def owning(flow: dict[str, Any] | None) -> bool:
    return flow is not None and flow["state"] == "running" and flow["partitions_owned"] > 0


@dataclass
class Measured:
    size: Size
    seen: dict[str, FlowSeen]
    texts: dict[str, list[Version]]
    changes: list[Change]
    rejection: list[str]  # a's problems on /flows while v3 was its file
    rejection_logged: bool
    reloads: dict[str, float]  # leadstreams_flow_reloads_total by result
    exit_code: int | None
    twice: list[str]  # a few leads written more than once, where (Reader.twice)

    @property
    def lost(self) -> int:
        return sum(s.count.lost for s in self.seen.values())

    @property
    def duplicates(self) -> int:
        return sum(s.count.duplicates for s in self.seen.values())

    @property
    def events(self) -> int:
        return sum(sum(s.versions.values()) for s in self.seen.values())

    @property
    def mismatched(self) -> list[str]:
        return [m for s in self.seen.values() for m in s.mismatched]

    @property
    def invalid_ran(self) -> int:
        invalid = [v for v in self.texts["a"] if not v.valid]
        return sum(self.seen["a"].versions[v.hash] for v in invalid)

    @property
    def a_versions(self) -> dict[str, int]:
        """Events of each of a's valid versions, by label."""
        return {v.label: self.seen["a"].versions[v.hash] for v in self.texts["a"] if v.valid}

    def duplicates_by_change(self) -> dict[str, int]:
        """Extra outputs by the last change before the lead's first output was written."""
        found: Counter[str] = Counter()
        for seen in self.seen.values():
            for lead, count in seen.count.outputs.items():
                if count > 1:
                    before = [c.label for c in self.changes if c.started <= seen.first_written[lead]]
                    found[before[-1] if before else "no change yet"] += count - 1
        return dict(found)

    def c_latency(self) -> tuple[list[float], float]:
        """c's p95 latency (ms) for the leads written during each change (+-WINDOW s), and outside all."""
        c = self.seen["c"]
        latency = {lead: (c.visible[lead] - at) * 1000 for lead, at in c.written.items() if lead in c.visible}
        windows = [(ch.started - WINDOW, ch.seen + WINDOW) for ch in self.changes]
        during = [
            [ms for lead, ms in latency.items() if low <= c.written[lead] <= high] for low, high in windows
        ]
        outside = [ms for lead, ms in latency.items()
                   if not any(low <= c.written[lead] <= high for low, high in windows)]  # fmt: skip
        return [percentiles_ms(ms)["p95"] if ms else 0.0 for ms in during], percentiles_ms(outside)["p95"]

    @property
    def ok(self) -> bool:
        during, outside = self.c_latency()
        return (
            self.lost == 0 and self.duplicates == 0 and not self.mismatched and self.invalid_ran == 0
            and all(self.a_versions.values()) and bool(self.rejection) and self.rejection_logged
            and max(during) <= outside + self.size.stall_ms and self.exit_code == 0
        )  # fmt: skip

    def line(self) -> str:
        during, outside = self.c_latency()
        inputs = sum(len(s.count.inputs) for s in self.seen.values())
        sample = "".join(s.count.sample() for s in self.seen.values())
        mismatched = f" mismatched={self.mismatched[:3]}" if self.mismatched else ""
        return (
            f"many_flows: flows={len(FLOWS)} leads={inputs} lost={self.lost} duplicates={self.duplicates} "
            f"versions_ok={self.events - len(self.mismatched)}/{self.events} a_versions={self.a_versions} "
            f"invalid_ran={self.invalid_ran} rejected_on_flows={len(self.rejection)} "
            f"rejection_logged={self.rejection_logged} "
            f"reloads={','.join(f'{k}:{v:g}' for k, v in sorted(self.reloads.items()))} "
            f"reload_s={[c.seconds for c in self.changes]} C_p95_during_ms={max(during):.0f} "
            f"C_p95_by_change_ms={[round(ms) for ms in during]} C_p95_outside_ms={outside:.0f} "
            f"worker_exit={self.exit_code}{mismatched}{sample}"
            + (f" duplicates_after={self.duplicates_by_change()} twice={self.twice}" if self.twice else "")
        )


def reload_counts(metrics: str) -> dict[str, float]:
    """leadstreams_flow_reloads_total summed by result."""
    counts: Counter[str] = Counter()
    for found in re.finditer(r"^leadstreams_flow_reloads_total\{([^}]*)\} (\S+)$", metrics, re.M):
        result = re.search(r'result="([^"]+)"', found.group(1))
        counts[result.group(1) if result else "?"] += float(found.group(2))
    return dict(counts)


async def scenario_many_flows(bootstrap: str, workdir: Path, size: Size, loglevel: str = "info") -> Measured:
    prefix = f"mf-{uuid.uuid4().hex[:8]}"
    texts = versions(prefix)
    folder = workdir / f"{prefix}-flows"
    folder.mkdir(parents=True)
    files = {flow: folder / f"{flow}.yaml" for flow in FLOWS}
    for flow in FLOWS:
        write_file(files[flow], texts[flow][0].text)
    api_key = f"mf-secret-{uuid.uuid4().hex}"
    partner = PartnerProcess(api_key, NO_FAULTS, workdir / f"{prefix}-partner.log")
    env = {"PARTNER_URL": await partner.start(), "PARTNER_API_KEY": api_key}
    args = ["--group-id", prefix, "--allow-loopback", "--loglevel", loglevel]
    process = WorkerProcess(folder, bootstrap, free_port(), workdir / f"{prefix}-worker.log", env, args)
    worker = Worker(process)
    reader = Reader(bootstrap, prefix, texts)
    publishing: asyncio.Future[None] | None = None
    a, b = texts["a"], texts["b"][0]
    try:
        process.start()
        for flow in FLOWS:  # the worker creates the topics; all three assigned before leads flow
            await until(lambda f=flow: worker.showing(f, owning), CHANGE_TIMEOUT, f"flow {flow} to start")
        reader.start(size.deadline)
        sent: Counter[str] = Counter()
        batches = {f"{prefix}.{flow}.input": leads(size.leads, f"{prefix}-{flow}") for flow in FLOWS}
        publishing = asyncio.ensure_future(publish_paced(bootstrap, batches, size.rate, sent))

        async def after(share: float) -> None:
            """Until ``share`` of the leads are published (the changes fall while leads flow)."""
            published = lambda: min(sent.values(), default=0) >= share * size.leads  # noqa: E731
            await wait_for(published, size.deadline, f"{share:.0%} of the leads published")

        a_rejected = lambda f: f is not None and f["version"] == a[1].hash and bool(f["problems"])  # noqa: E731
        plan = [  # (share of the leads published, what, the act, the flow, what /flows shows then)
            (0.15, "a v2", lambda: write_file(files["a"], a[1].text), "a", running(a[1].hash)),
            (0.30, "a v3 (invalid)", lambda: write_file(files["a"], a[2].text), "a", a_rejected),
            (0.45, "a v4", lambda: write_file(files["a"], a[3].text), "a", running(a[3].hash)),
            (0.55, "b removed", files["b"].unlink, "b", lambda f: f is None),
            # b's leads published meanwhile wait on its topic
            (0.70, "b added", lambda: write_file(files["b"], b.text), "b", owning),
        ]
        changes, rejection = [], []
        for share, label, act, flow, expect in plan:
            await after(share)
            changes.append(await worker.change(label, act, flow, expect))
            if expect is a_rejected:
                rejection = list((worker.flow("a") or {}).get("problems", []))
        await publishing
        print("  [many_flows] all published; waiting for every output", file=sys.stderr, flush=True)
        await wait_for(lambda: reader.all_out(size.leads), size.deadline, "every lead's output")
        await until(lambda: reader.settled(prefix), 120, "the group to commit everything")
        reloads = reload_counts(await worker.get("/metrics"))
    finally:
        if publishing is not None:
            publishing.cancel()
        await reader.stop()
        exit_code = process.stop()
        partner.stop()
    log = process.log_path.read_text(errors="replace")
    logged = re.search(re.escape(str(files["a"])) + r":\d+:", log) is not None
    return Measured(size, reader.seen, texts, changes, rejection, logged, reloads, exit_code, reader.twice())
