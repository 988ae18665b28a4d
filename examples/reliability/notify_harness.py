"""Notification webhooks on the real broker (issue 21): a webhook partner that answers late
or is down, a worker on a flow of its own with `notify:` steps, and a tap that reads every
topic of the run while it goes, so the scenarios wait on conditions, not on sleeps.

Shared by tests/integration/test_notifications_on_kafka.py (small sizes) and
examples/reliability/notify_measure.py (full size).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from agents.kafka_io import READ_COMMITTED, ensure_topics
from examples.partners.webhooks import BUYER_TOKEN, CRM_SECRET, HOOKS, create_webhooks_app
from examples.support.process import WorkerProcess, free_port, serve_app, wait_for

PARTITIONS = 3
# The notify steps: important, and not. Both post to the CRM webhook of
# examples/partners/webhooks.py, the one its knobs slow down or take down; the
# Idempotency-Key (``<lead id>:<step>``) tells their requests apart.
CRM, ALERT = "crm_webhook", "alert"
FINAL = frozenset({"delivered", "failed", "gave_up", "skipped"})  # results after which none follows


class WebhookPartner:
    """examples/partners/webhooks.py: a buyer that answers at once (the lead's own step)
    and a CRM webhook that answers after ``delay`` seconds, or 503 while ``down``."""

    def __init__(self, delay: float = 0.0, down: bool = False) -> None:
        self.app = create_webhooks_app(crm_delay=delay, crm_down=down)
        self.hooks = self.app[HOOKS]

    @property
    def down(self) -> bool:
        return self.hooks.crm_down

    @down.setter
    def down(self, value: bool) -> None:
        self.hooks.crm_down = value

    def received(self) -> Counter[str]:
        """Webhook requests so far by Idempotency-Key, counted on arrival."""
        return Counter(key or "" for key in self.hooks.per_key("crm").elements())


def key(lead_id: str, step: str) -> str:
    """The Idempotency-Key the engine sends for a lead's step."""
    return f"{lead_id}:{step}"


@contextlib.asynccontextmanager
async def serving(partner: WebhookPartner) -> AsyncIterator[str]:
    """The partner on a loopback port (its base URL) until the block ends."""
    runner, url = await serve_app(partner.app)
    try:
        yield url
    finally:
        await runner.cleanup()


def flow_document(
    name: str,
    topics: dict[str, str],
    url: str,
    notify: Iterable[str],
    concurrency: int,
    delayed_retry: dict[str, Any],
) -> dict[str, Any]:
    """A flow that delivers the lead to a buyer, then notifies (``notify``: CRM and/or ALERT).
    Each webhook step has its integration (as a CRM and a chat tool would): their breaker
    opens for 1 s only, so the important ones come through soon after the partner is back."""
    webhook = {
        "base_url": url, "allow_loopback": True, "concurrency": concurrency, "timeout": "10s",
        "headers": {"X-Webhook-Secret": CRM_SECRET},
        "retry": {"attempts": 2, "backoff": "10ms", "max_backoff": "50ms"},
        "circuit": {"open_for": "1s"},
        "pool": {"size": concurrency},  # (the default pool of 100 connections would cap it)
    }  # fmt: skip
    buyer = {"base_url": url, "allow_loopback": True, "concurrency": 200, "timeout": "10s",
             "headers": {"Authorization": f"Bearer {BUYER_TOKEN}"}}  # fmt: skip
    steps: list[dict[str, Any]] = [{
        "name": "deliver", "integration": "buyer",
        "request": {"method": "POST", "url": "/buyer/leads",
                    "json": {"lead_id": "{{ lead.id }}", "state": "CA"}},
        "map": {"buyer_status": "{{ response.status }}"},
    }]  # fmt: skip
    for step in notify:
        steps.append({
            "name": step, "integration": step, "notify": {"important": True} if step == CRM else True,
            "request": {"method": "POST", "url": "/crm/hooks/lead",
                        "json": {"lead_id": "{{ lead.id }}", "buyer_status": "{{ lead.buyer_status }}"}},
        })  # fmt: skip
    return {
        "version": 1,
        "name": name,
        "topics": topics,
        "delayed_retry": delayed_retry,
        "integrations": {
            "buyer": buyer,
            **{step: dict(webhook) for step in notify},
        },  # (copies: no YAML aliases)
        "steps": steps,
    }


@dataclass
class NotifyRun:
    """One worker (kept across kill -9 by its static instance id) on topics of its own."""

    bootstrap: str
    workdir: Path
    url: str
    notify: tuple[str, ...] = (CRM,)
    concurrency: int = 200  # of each webhook integration
    delayed_retry: dict[str, Any] = field(
        default_factory=lambda: {"first": "1s", "factor": 2, "cap": "2s", "attempts": 10}
    )
    prefix: str = field(default_factory=lambda: f"ntf-{uuid.uuid4().hex[:8]}")
    worker: WorkerProcess | None = None

    @property
    def topics(self) -> dict[str, str]:
        names = {"input": "in", "enriched": "out", "errors": "errors", "retry": "retry"}
        topics = {role: f"{self.prefix}.{suffix}" for role, suffix in names.items()}
        if self.notify:
            topics["notifications"] = f"{self.prefix}.notify"
        return topics

    @property
    def results(self) -> str | None:
        """The attempts events' topic, ``<notifications>.results``."""
        return f"{self.topics['notifications']}.results" if self.notify else None

    @property
    def read_topics(self) -> list[str]:
        names = [self.topics["input"], self.topics["enriched"], self.topics["errors"]]
        return names + ([self.topics["notifications"], self.results] if self.results else [])

    async def start(self) -> None:
        # Created here so that the tap can subscribe before the worker writes to them.
        await ensure_topics(self.bootstrap, self.read_topics, PARTITIONS)
        flow = self.workdir / f"{self.prefix}.yaml"
        document = flow_document(self.prefix, self.topics, self.url, self.notify, self.concurrency,
                                 self.delayed_retry)  # fmt: skip
        flow.write_text(yaml.safe_dump(document, sort_keys=False))
        group = ["--group-id", self.prefix, "--instance-id", f"{self.prefix}-0"]
        args = [*group, "--partitions", str(PARTITIONS)]
        self.worker = WorkerProcess(flow, self.bootstrap, free_port(), self.workdir / f"{self.prefix}.log",
                                    args=args)  # fmt: skip
        self.worker.start()

    def kill_and_restart(self) -> None:
        assert self.worker is not None
        self.worker.kill()
        self.worker.start()  # same instance id: it takes its partitions back at once

    async def stop(self) -> None:
        """SIGTERM and wait in a thread: this loop serves the partner the worker may be calling."""
        if self.worker is not None:
            await asyncio.to_thread(self.worker.stop)

    def check_alive(self) -> None:
        if self.worker is None or not self.worker.alive:
            raise RuntimeError(f"worker {self.prefix} exited:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.worker.log_tail(60) if self.worker else "(not started)"

    async def publish(self, leads: list[tuple[str, dict[str, Any]]], rate: float | None = None) -> None:
        """The leads (keyed by id) at ``rate`` per second, or as fast as the client batches.
        Paced in ticks of 10 ms without linger, so that each record's CreateTime is when it
        left (the bench's publish_paced runs for a duration, not a count)."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                    linger_ms=0 if rate else 5)  # fmt: skip
        await producer.start()
        try:
            pending = []
            started, sent = time.monotonic(), 0
            while sent < len(leads):
                due = (
                    len(leads)
                    if rate is None
                    else min(len(leads), int((time.monotonic() - started) * rate) + 1)
                )
                for lead_id, lead in leads[sent:due]:
                    pending.append(
                        await producer.send(self.topics["input"], orjson.dumps(lead), key=lead_id.encode())
                    )
                sent = max(sent, due)
                if rate is not None and sent < len(leads):
                    await asyncio.sleep(0.01)  # pacing the load, not waiting for anything
            await asyncio.gather(*pending)
        finally:
            await producer.stop()


def leads(tag: str, count: int, start: int = 0) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{tag}-{n}", {"id": f"{tag}-{n}", "email": f"{tag}{n}@mail.example"})
        for n in range(start, start + count)
    ]


@dataclass
class Ledger:
    """What the run's topics say so far, by lead id."""

    input_ts: dict[tuple[int, int], int] = field(default_factory=dict)  # (partition, offset) -> CreateTime ms
    outputs: defaultdict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    latencies_ms: dict[str, float] = field(default_factory=dict)  # first output's CreateTime - input's
    # The part of it before the worker took the lead: the event's received_at - input's CreateTime.
    before_worker_ms: dict[str, float] = field(default_factory=dict)
    # Records on the notifications topic, and attempts events, by (lead id, step).
    records: Counter[tuple[str, str]] = field(default_factory=Counter)
    attempts: defaultdict[tuple[str, str], list[dict[str, Any]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    failure: BaseException | None = None  # the tap stopped reading: the waits say so at once
    # First outputs whose input's CreateTime is not read yet: (lead id, input partition/offset, CreateTime).
    late_inputs: list[tuple[str, tuple[int, int], int, float]] = field(default_factory=list)

    def add(
        self, topic: str, partition: int, offset: int, timestamp: int, value: bytes, run: NotifyRun
    ) -> None:
        event = orjson.loads(value)
        if topic == run.topics["input"]:
            self.input_ts[(partition, offset)] = timestamp
        elif topic in (run.topics["enriched"], run.topics["errors"]):
            self.outputs[event["id"]].append({**event, "_topic": topic, "_ts": timestamp})
            if len(self.outputs[event["id"]]) == 1:  # a lead's first output (a replay comes later)
                source = (event["input"]["partition"], event["input"]["offset"])
                received = datetime.fromisoformat(event["received_at"]).timestamp() * 1000
                self.late_inputs.append((event["id"], source, timestamp, received))
        elif topic == run.topics.get("notifications"):
            self.records[(event["lead_id"], event["step"])] += 1
        elif topic == run.results:
            self.attempts[(event["lead_id"], event["step"])].append(event)
        if self.late_inputs:
            self.resolve_latencies()

    def resolve_latencies(self) -> None:
        """Publish-to-output per lead: its first output's CreateTime minus its input's (the
        input partition may be read after the output)."""
        waiting = []
        for lead_id, source, timestamp, received in self.late_inputs:
            if source in self.input_ts:
                self.latencies_ms[lead_id] = float(timestamp - self.input_ts[source])
                self.before_worker_ms[lead_id] = received - self.input_ts[source]
            else:
                waiting.append((lead_id, source, timestamp, received))
        self.late_inputs = waiting

    def notification(self, lead_id: str, step: str) -> str | None:
        """The ``notification`` the lead's last output says for ``step``."""
        events = self.outputs.get(lead_id)
        if not events:
            return None
        for entry in events[-1].get("steps", []):
            if entry.get("name") == step:
                return entry.get("notification") or f"({entry.get('outcome')})"
        return None

    def final(self, lead_id: str, step: str) -> str | None:
        """The last attempts event's result: delivered, failed, gave_up, retrying or skipped."""
        events = self.attempts.get((lead_id, step))
        return events[-1]["result"] if events else None

    def all_final(self, ids: Iterable[str], steps: Iterable[str]) -> bool:
        return all(self.final(i, s) in FINAL for s in steps for i in ids)

    def all_tried(self, ids: Iterable[str], steps: Iterable[str]) -> bool:
        return all((i, s) in self.attempts for s in steps for i in ids)

    def had(self, lead_id: str, step: str, result: str) -> bool:
        """Whether any attempts event of the notification says ``result``."""
        return any(e["result"] == result for e in self.attempts.get((lead_id, step), []))

    def requests_recorded(self, lead_id: str, step: str) -> int:
        return sum(int(e.get("requests", 0)) for e in self.attempts.get((lead_id, step), []))

    def p50_ms(self, ids: Iterable[str], before_worker: bool = False) -> float:
        values = self.before_worker_ms if before_worker else self.latencies_ms
        return statistics.median(values[i] for i in ids)

    def percentile_ms(self, ids: Iterable[str], q: int, before_worker: bool = False) -> float:
        values = sorted((self.before_worker_ms if before_worker else self.latencies_ms)[i] for i in ids)
        return values[min(len(values) - 1, int(len(values) * q / 100))]


@contextlib.asynccontextmanager
async def tapping(run: NotifyRun) -> AsyncIterator[Ledger]:
    """A consumer (no group) on every topic of the run from the beginning, feeding a Ledger
    until the block ends."""
    ledger = Ledger()
    consumer = AIOKafkaConsumer(*run.read_topics, bootstrap_servers=run.bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                isolation_level=READ_COMMITTED)  # fmt: skip
    await consumer.start()

    async def read() -> None:
        try:
            while True:
                fetched = await consumer.getmany(timeout_ms=200, max_records=5000)
                for batch in fetched.values():
                    for msg in batch:
                        ledger.add(msg.topic, msg.partition, msg.offset, msg.timestamp, msg.value or b"", run)
        except Exception as exc:  # e.g. a record not shaped as the spec says: reported by `until`
            ledger.failure = exc

    task = asyncio.create_task(read())
    try:
        yield ledger
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()


async def until(run: NotifyRun, ledger: Ledger, holds: Callable[[], bool], timeout: float, what: str) -> None:
    """``wait_for`` that fails at once (with the worker's log) when the worker dies, and
    names what was awaited with the worker's log on a timeout."""

    def check() -> bool:
        run.check_alive()
        if ledger.failure is not None:
            raise RuntimeError(
                f"reading {run.prefix}'s topics failed: {ledger.failure!r}"
            ) from ledger.failure
        return holds()

    try:
        await wait_for(check, timeout, what)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}\n--- worker log ---\n{run.log_tail()}") from None


async def settle(
    run: NotifyRun, ledger: Ledger, holds: Callable[[], bool], timeout: float, what: str
) -> bool:
    """``until`` that returns False on a timeout (the caller reports what is missing, by lead
    id, which says more than a timeout); a dead worker still raises."""
    try:
        await until(run, ledger, holds, timeout, what)
    except TimeoutError as exc:
        print(str(exc)[:3000], file=sys.stderr)
        return False
    return True


def first(items: Iterable[Any], count: int = 5) -> list[Any]:
    """A few of ``items``, for a failure message."""
    return list(items)[:count]
