"""`make demo`: 1,000 leads through the blacklist flow on a real Kafka broker.

Starts the partner API (in this process) and a worker (a subprocess running
`leadstreams worker --console`), publishes sample leads, waits until every one is on the
enriched or errors topic, prints a summary and the worker's web console address, keeps it
up for a moment (--keep: until Ctrl-C) and shuts everything down.
Needs LEADSTREAMS_BOOTSTRAP (make demo starts a broker and sets it).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[2]))  # the repository, for examples.support
from leads import sample_leads
from partner_api import create_partner_app

from agents.kafka_io import Record, collect, end_offsets, ensure_topics, publish
from examples.support.process import WorkerProcess, free_port, serve_app
from streams.loader import load_flow

ROOT = Path(__file__).resolve().parents[2]
FLOW = ROOT / "examples" / "flows" / "demo.yaml"
LEADS = 1000
API_KEY = "demo-" + uuid.uuid4().hex[:12]
CONSOLE_TOKEN = secrets.token_urlsafe(18)
LINGER = 15.0  # seconds the web console stays up after the summary
console = Console(width=None if sys.stdout.isatty() else 110)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def run(bootstrap: str, keep: bool) -> int:
    started = time.monotonic()
    partner, partner_url = await serve_app(create_partner_app(API_KEY))
    env = {"INTERNAL_API_KEY": API_KEY, "PARTNER_URL": partner_url, "PARTNER_ALLOW_LOOPBACK": "true",
           "LEADSTREAMS_CONSOLE_TOKEN": CONSOLE_TOKEN}  # fmt: skip
    flow = load_flow(FLOW, env)
    topics = flow.topics
    await ensure_topics(bootstrap, [topics.input, topics.enriched, topics.errors], partitions=4)
    start = await end_offsets(bootstrap, [topics.input, topics.enriched, topics.errors])

    web_port = free_port()
    log_path = Path(tempfile.gettempdir()) / f"leadstreams-demo-worker-{web_port}.log"
    console.print(f"partner API at {partner_url}; starting worker (log: {log_path})", soft_wrap=True)
    worker = WorkerProcess(FLOW, bootstrap, web_port, log_path, env, args=["--console"])
    worker.start()
    try:
        code = await drive(bootstrap, flow.topics, start, web_port, worker, log_path, started)
        await show_the_console(web_port, keep)
        return code
    finally:
        worker.stop(timeout=30)
        await partner.cleanup()


async def drive(bootstrap, topics, start, web_port, worker, log_path, started) -> int:  # type: ignore[no-untyped-def]
    run_id = uuid.uuid4().hex[:8]
    leads = sample_leads(LEADS, run_id=run_id)
    collected = await publish_and_collect(bootstrap, topics, start, worker, log_path, leads, run_id)
    processing, latencies = print_outcomes(collected, topics)
    await print_metrics(web_port)
    accounted = len(collected.outputs)
    console.print(f"accounted for {accounted} of {len(leads)} leads (duplicates {collected.duplicates})")
    console.print(
        f"processing latency (received -> completed) p50 {percentile(processing, 0.5):.1f} ms, "
        f"p99 {percentile(processing, 0.99):.1f} ms",
        soft_wrap=True,
    )
    console.print(
        f"publish-to-output p50 {percentile(latencies, 0.5):.0f} ms, "
        f"p99 {percentile(latencies, 0.99):.0f} ms "
        "(includes the worker joining its group: leads are published while it starts)",
        soft_wrap=True,
    )
    console.print(f"total {time.monotonic() - started:.1f}s")
    return 0 if accounted == len(leads) else 1


async def show_the_console(web_port: int, keep: bool) -> None:
    """The worker's web console with the run's numbers and problems: up for a moment, or until
    Ctrl-C with --keep (make demo KEEP=1); its test console sends leads to the demo partner."""
    url = f"http://127.0.0.1:{web_port}/#token={CONSOLE_TOKEN}"
    if not keep:
        console.print(f"web console (up for {LINGER:.0f} s; make demo KEEP=1 keeps it until Ctrl-C): {url}",
                      soft_wrap=True)  # fmt: skip
        await asyncio.sleep(LINGER)  # (a pause for a person, not a synchronisation)
        return
    console.print(f"web console: {url}  (Ctrl-C stops the worker)", soft_wrap=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()


@dataclass
class Collected:
    """This run's outputs (one per lead: the last seen), every record read, and how many
    outputs were seen twice."""

    outputs: dict[str, Record] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)
    duplicates: int = 0


async def publish_and_collect(bootstrap, topics, start, worker, log_path, leads, run_id) -> Collected:  # type: ignore[no-untyped-def]
    """Publish the leads and read the outputs until every lead is accounted for."""
    collected = Collected()
    with Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        sent = progress.add_task("published leads", total=len(leads))
        done = progress.add_task("accounted for (out/errors)", total=len(leads))
        await publish(
            bootstrap,
            topics.input,
            ((lead.key, lead.value) for lead in leads),
            on_sent=lambda n: progress.update(sent, completed=n),
        )

        def ours(event: dict[str, Any], origin: dict[str, Any]) -> bool:
            if event.get("lead") is not None:
                return str(event["id"]).startswith(run_id)
            return bool(origin["offset"] >= start.get((origin["topic"], origin["partition"]), 0))

        def on_record(record: Record) -> None:
            if record.topic == topics.input:
                return
            event = orjson.loads(record.value)
            origin = event["input"]
            if not ours(event, origin):
                return  # a lead of an earlier run on a reused broker
            marker = event["id"] if event.get("lead") is not None else str(origin)
            collected.duplicates += marker in collected.outputs
            collected.outputs[marker] = record
            progress.update(done, completed=len(collected.outputs))

        def finished(_: list[Record]) -> bool:
            if not worker.alive:
                raise RuntimeError(f"the worker exited; see {log_path}:\n{worker.log_tail()}")
            return len(collected.outputs) >= len(leads)

        collected.records = await collect(
            bootstrap,
            [topics.input, topics.enriched, topics.errors],
            finished,
            timeout=300,
            on_record=on_record,
            start=start,
        )
    return collected


def print_outcomes(collected: Collected, topics: Any) -> tuple[list[float], list[float]]:
    """The table of leads by topic and outcome; the processing and publish-to-output latencies (ms)."""
    inputs = {(r.partition, r.offset): r.timestamp_ms for r in collected.records if r.topic == topics.input}
    by_outcome: Counter[tuple[str, str]] = Counter()
    latencies, processing = [], []
    for record in collected.outputs.values():
        event = orjson.loads(record.value)
        by_outcome[(record.topic, event["outcome"])] += 1
        processing.append(_ms_between(event["received_at"], event["completed_at"]))
        sent_ms = inputs.get((event["input"]["partition"], event["input"]["offset"]))
        if sent_ms is not None:
            latencies.append(record.timestamp_ms - sent_ms)

    table = Table(title="leads by topic and outcome")
    for column in ("topic", "outcome", "leads"):
        table.add_column(column)
    for (topic, outcome), count in sorted(by_outcome.items()):
        table.add_row(topic, outcome, str(count))
    console.print(table)
    return processing, latencies


async def print_metrics(web_port: int) -> None:
    """The worker's counters of written leads and partner requests, from its /metrics."""
    metrics_url = f"http://127.0.0.1:{web_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(metrics_url) as response:
        metrics = await response.text()
    shown = [
        line
        for line in metrics.splitlines()
        if line.startswith(("leadstreams_leads_written_total", "leadstreams_request_duration_seconds_count"))
    ]
    console.print(f"metrics served at {metrics_url}:")
    for line in shown:
        console.print(f"  {line}", soft_wrap=True)


def _ms_between(start: str, end: str) -> float:
    parse = datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds() * 1000


def main() -> None:
    bootstrap = os.environ.get("LEADSTREAMS_BOOTSTRAP")
    if not bootstrap:
        sys.exit("LEADSTREAMS_BOOTSTRAP is not set: run `make demo` (it starts a local Kafka)")
    sys.exit(asyncio.run(run(bootstrap, keep="--keep" in sys.argv[1:])))


if __name__ == "__main__":
    main()
