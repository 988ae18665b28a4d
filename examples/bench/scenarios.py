"""The bench scenarios P1-P5. Each run gets fresh topics and a fresh consumer group;
leads/s come from the output records' CreateTime (N / (last - first)), so process
start-up is excluded; every wait polls against a deadline (the baseline's end offsets; the
worker's committed input, which holds under both guarantees: committed.py). P1 and P2 run the
worker under at-least-once and under exactly-once in the same bench run (issue 18)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from committed import CommittedOutputs
from flow_count import Run, flow_counts, flows_per_worker
from kafka_tools import (
    Message,
    OutputCounter,
    create_topics,
    publish_fast,
    publish_large,
    publish_paced,
    read_all,
)
from partner import PartnerState
from processors import BASE, EXACTLY_ONCE, WORKER, Processor, Setup, start, start_worker
from rich.progress import Progress, TaskID
from stats import CpuPerLead, RssSampler, mean_rate, percentiles_ms

from agents.kafka_io import ensure_topics
from streams.ratelimit import busiest_window

KINDS = (BASE, WORKER)
WARMUP_KEY = b"warmup"


@dataclass(frozen=True)
class Sizes:
    p1_leads: int = 100_000
    p2_leads: int = 30_000
    p2_latency: float = 0.050  # seconds
    p2_concurrency: int = 500
    p3_rate: float = 500.0  # requests/s for the whole group
    p3_seconds: float = 30.0  # leads published: rate x seconds
    p3_partitions: int = 4
    p4_seconds: float = 20.0
    p4_rate: float | None = None  # default: half of each side's P1 leads/s
    p5_seconds: float = 120.0
    p5_rate: float | None = None  # default: each side's P1 leads/s (kept busy)
    p5_large: int = 16  # large leads per burst (0: none): around and above the worker's 1 MiB limit
    p5_bursts: int = 1  # bursts of large leads, spread evenly over the run
    concurrency: int = 100  # P1, P4, P5 (both sides)
    batch_size: int = 500  # worker --batch-size, baseline getmany max_records
    partitions: int = 4  # input and output topics
    error_rate: float = 0.0  # share of partner answers that are HTTP 422
    deadline: float = 900.0  # seconds to wait for one run's outputs
    fallback_rate: float = 500.0  # P4/P5 rate when P1 did not run and no rate is given
    f1_flows: int = 50  # F1: workers with 1, a fifth of this and this many flows
    f1_idle: float = 20.0  # F1: seconds of the idle window per count (after min(10, half) s of rest)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(p1_leads=3000, p2_leads=2000, p3_rate=100, p3_seconds=4, p4_seconds=4,
                   p5_seconds=24, p5_large=4, deadline=180, f1_flows=10, f1_idle=5)  # fmt: skip

    def long_p5(self) -> Sizes:
        """P5 for 10 minutes with three bursts of large leads."""
        return dataclasses.replace(self, p5_seconds=600.0, p5_bursts=3)


@dataclass
class Bench:
    """What every scenario needs: the broker, the partner, sizes, progress display."""

    bootstrap: str
    partner: PartnerState
    partner_url: str
    workdir: Path
    sizes: Sizes
    progress: Progress
    p1: dict[str, float] = field(default_factory=dict)  # side -> leads/s found in P1
    run_tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    def setup(self, label: str, kind: str, concurrency: int, **overrides: Any) -> Setup:
        name = f"bench-{self.run_tag}-{label.lower()}-{kind}-{uuid.uuid4().hex[:4]}"
        values: dict[str, Any] = {
            "bootstrap": self.bootstrap, "partner_url": self.partner_url, "topic": name, "group": name,
            "concurrency": concurrency, "batch_size": self.sizes.batch_size,
            "partitions": self.sizes.partitions,
        }  # fmt: skip
        return Setup(**{**values, **overrides})

    async def topics(self, setup: Setup) -> None:
        await ensure_topics(self.bootstrap, [setup.input, *setup.outputs], setup.partitions)

    def task(self, description: str, total: float | None) -> TaskID:
        return self.progress.add_task(description, total=total)

    def rate_for(self, kind: str, given: float | None, share: float) -> float:
        if given is not None:
            return given
        return self.p1[kind] * share if kind in self.p1 else self.sizes.fallback_rate

    def rate_basis(self, given: float | None, share: float) -> str:
        """Where ``rate_for`` takes the rate from, for the report."""
        if given is not None:
            return "given"
        if len(self.p1) == len(KINDS):
            return f"{share:g} x each side's P1 leads/s"
        return f"fallback {self.sizes.fallback_rate:g}/s (P1 not run)"


def leads(tag: str, count: int | None = None) -> Iterator[Message]:
    """Sample leads (about 200 bytes each), key = id; endless when ``count`` is None."""
    index = 0
    while count is None or index < count:
        lead_id = f"{tag}-{index}"
        lead = {"id": lead_id, "email": f"user{index}@mail{index % 97}.example", "phone": f"555{index:07d}",
                "first_name": "Ana", "last_name": "Lima", "state": "CA", "zip": "94105",
                "source": {"id": "bench", "campaign": "c-7"}, "consent": True}  # fmt: skip
        yield lead_id.encode(), orjson.dumps(lead)
        index += 1


LARGE_SIZES = (1_020_000, 1_020_000, 1_600_000, 2_100_000)  # bytes: two under 1 MiB, two over
LARGE_TOPIC_BYTES = 4 << 20  # the P5 input topic's max.message.bytes


def large_leads(tag: str, count: int) -> Iterator[Message]:
    """Leads of exactly LARGE_SIZES bytes in turn, alternately one long string and many
    small objects (a list of small dicts: many allocations when decoded). Every one ends
    on the errors topic: over the 1 MiB input limit, or (under it) an output over
    1,000,000 bytes."""
    event = {"at": "2024-05-01T12:00:00.000Z", "kind": "page_view", "n": 0}
    per_event = len(orjson.dumps(event)) + 7  # with a longer n and a comma
    for index in range(count):
        size = LARGE_SIZES[index % len(LARGE_SIZES)]
        lead_id = f"{tag}-large-{index}"
        lead: dict[str, Any] = {"id": lead_id, "email": f"large{index}@mail.example", "notes": ""}
        if index % 2:
            lead["history"] = [{**event, "n": n} for n in range(size // per_event)]
        lead["notes"] = "n" * (size - len(orjson.dumps(lead)))
        value = orjson.dumps(lead)
        assert len(value) == size, (len(value), size)
        yield lead_id.encode(), value


def failed(processor: Processor, exc: BaseException) -> RuntimeError:
    return RuntimeError(f"{processor.kind}: {exc}; log {processor.log_path}:\n{processor.log_tail()}")


@dataclass
class Measured:
    """One throughput run: leads/s from the outputs' CreateTime, CPU per lead, and for the
    worker the figures of its committed outputs (committed.py)."""

    rate: float
    cpu: float | None
    committed: dict[str, Any] | None = None


async def throughput(
    bench: Bench, label: str, kind: str, count: int, concurrency: int, latency: float, guarantee: str = ""
) -> Measured:
    """Pre-publish ``count`` leads, start the processor: leads/s from output timestamps, and
    the processor's CPU microseconds per lead while outputs came. The worker runs with
    ``guarantee`` (default at-least-once) and is measured through a read_committed reader."""
    overrides = {"guarantee": guarantee} if guarantee else {}
    setup = bench.setup(label, f"{kind}-{guarantee}" if guarantee else kind, concurrency, **overrides)
    bench.partner.reset(latency, bench.sizes.error_rate)
    await bench.topics(setup)
    side = f"{kind} {guarantee}" if guarantee else kind
    sent = bench.task(f"{label} {side}: publish", count)
    await publish_fast(bench.bootstrap, setup.input, leads(setup.topic, count),
                       lambda n: bench.progress.update(sent, completed=n))  # fmt: skip
    done = bench.task(f"{label} {side}: outputs", count)
    processor = start(kind, setup, bench.workdir)
    cpu = CpuPerLead(processor.pid)

    def progress(outputs: int) -> None:
        bench.progress.update(done, completed=outputs)
        cpu.at(outputs)

    try:
        if kind == WORKER:
            async with CommittedOutputs(
                bench.bootstrap, setup.group, setup.input, setup.outputs, setup.partitions
            ) as committed:
                await committed.wait_committed(bench.sizes.deadline, lambda: processor.alive, progress)
                progress(count)
                outputs = await committed.read(count)
            figures = outputs.summary(count)
            return Measured(figures.pop("leads_s"), cpu.micros(), figures)
        async with OutputCounter(bench.bootstrap, setup.outputs) as counter:
            await counter.wait_for(count, bench.sizes.deadline, lambda: processor.alive, progress)
            first, last = await counter.edge_timestamps()
    except (RuntimeError, TimeoutError) as exc:
        raise failed(processor, exc) from exc
    finally:
        processor.stop()
    return Measured(count / max((last - first) / 1000, 0.001), cpu.micros())


def cpu_figures(cpu: dict[str, float | None]) -> dict[str, float | None]:
    return {f"{kind}_cpu_us_per_lead": None if us is None else round(us, 1) for kind, us in cpu.items()}


def exactly_once_figures(alo: Measured, eos: Measured) -> dict[str, Any]:
    """The worker on exactly-once against the worker on at-least-once, in one bench run:
    leads/s and their ratio, and the latency a lead sees from the worker taking it to a
    read_committed reader seeing its output (p99 added by the transactions)."""
    assert alo.committed is not None and eos.committed is not None
    alo_ms, eos_ms = alo.committed["received_to_visible_ms"], eos.committed["received_to_visible_ms"]
    return {"leads_s": round(eos.rate, 1), "at_least_once_leads_s": round(alo.rate, 1),
            "ratio": round(eos.rate / alo.rate, 3),
            "visible_leads_s": eos.committed["visible_leads_s"],
            "at_least_once_visible_leads_s": alo.committed["visible_leads_s"],
            "received_to_visible_ms": eos_ms, "at_least_once_received_to_visible_ms": alo_ms,
            "written_to_visible_ms": eos.committed["written_to_visible_ms"],
            "at_least_once_written_to_visible_ms": alo.committed["written_to_visible_ms"],
            "added_p50_ms": round(eos_ms["p50"] - alo_ms["p50"], 1),
            "added_p99_ms": round(eos_ms["p99"] - alo_ms["p99"], 1),
            "cpu_us_per_lead": None if eos.cpu is None else round(eos.cpu, 1)}  # fmt: skip


async def p1_overhead(bench: Bench) -> dict[str, Any]:
    sizes = bench.sizes
    measured = {
        kind: await throughput(bench, "P1", kind, sizes.p1_leads, sizes.concurrency, 0.0) for kind in KINDS
    }
    eos = await throughput(bench, "P1", WORKER, sizes.p1_leads, sizes.concurrency, 0.0, EXACTLY_ONCE)
    bench.p1.update({kind: m.rate for kind, m in measured.items()})
    return {"leads": sizes.p1_leads, "concurrency": sizes.concurrency,
            "baseline_leads_s": round(bench.p1[BASE], 1), "worker_leads_s": round(bench.p1[WORKER], 1),
            "ratio": round(bench.p1[WORKER] / bench.p1[BASE], 3),
            **cpu_figures({kind: m.cpu for kind, m in measured.items()}),
            "exactly_once": exactly_once_figures(measured[WORKER], eos)}  # fmt: skip


async def p2_latency(bench: Bench) -> dict[str, Any]:
    sizes = bench.sizes
    args = (sizes.p2_leads, sizes.p2_concurrency, sizes.p2_latency)
    measured = {kind: await throughput(bench, "P2", kind, *args) for kind in KINDS}
    eos = await throughput(bench, "P2", WORKER, *args, EXACTLY_ONCE)
    rates = {kind: m.rate for kind, m in measured.items()}
    latency_bound = sizes.p2_concurrency / sizes.p2_latency
    bound = min(latency_bound, rates[BASE])
    return {"leads": sizes.p2_leads, "concurrency": sizes.p2_concurrency,
            "partner_latency_ms": round(sizes.p2_latency * 1000, 1),
            "baseline_leads_s": round(rates[BASE], 1), "worker_leads_s": round(rates[WORKER], 1),
            "latency_bound_leads_s": round(latency_bound, 1), "bound_leads_s": round(bound, 1),
            "ratio_to_bound": round(rates[WORKER] / bound, 3),
            **cpu_figures({kind: m.cpu for kind, m in measured.items()}),
            "exactly_once": exactly_once_figures(measured[WORKER], eos)}  # fmt: skip


async def rate_precision(bench: Bench, workers: int) -> dict[str, Any]:
    """Worker(s) with a group-wide rate limit; the partner's request times."""
    sizes = bench.sizes
    count = int(sizes.p3_rate * sizes.p3_seconds)
    partitions = max(sizes.p3_partitions, workers)
    setup = bench.setup(
        f"P3x{workers}", WORKER, sizes.concurrency, rate_limit=sizes.p3_rate, partitions=partitions
    )
    bench.partner.reset()
    await bench.topics(setup)
    await publish_fast(bench.bootstrap, setup.input, leads(setup.topic, count))
    done = bench.task(f"P3 {workers} worker(s) at {sizes.p3_rate:g}/s: outputs", count)
    # --loglevel info: each worker logs the share of the input partitions it takes.
    processors = [start_worker(setup, bench.workdir, i, ["--loglevel", "info"]) for i in range(workers)]
    try:
        async with OutputCounter(bench.bootstrap, setup.outputs) as counter:
            await counter.wait_for(count, bench.sizes.deadline, lambda: all(p.alive for p in processors),
                                   lambda n: bench.progress.update(done, completed=n))  # fmt: skip
    except (RuntimeError, TimeoutError) as exc:
        raise failed(next((p for p in processors if not p.alive), processors[0]), exc) from exc
    finally:
        for processor in processors:
            processor.stop()
    times = bench.partner.arrivals
    owned = [processor.owned_partitions() for processor in processors]
    busiest, mean = busiest_window(times), mean_rate(times)
    return {"workers": workers, "partitions": partitions, "leads": count, "requests": len(times),
            "owned_partitions": owned, "max_1s": busiest, "max_over_limit": round(busiest / sizes.p3_rate, 3),
            "mean_rate": round(mean, 1), "mean_over_limit": round(mean / sizes.p3_rate, 3),
            "seconds": round(max(times) - min(times), 1)}  # fmt: skip


async def p3_rate_limit(bench: Bench) -> dict[str, Any]:
    one = await rate_precision(bench, 1)
    two = await rate_precision(bench, 2)
    return {"limit": bench.sizes.p3_rate, "target_seconds": bench.sizes.p3_seconds,
            "one_worker": one, "two_workers": two}  # fmt: skip


async def warm_up(bench: Bench, setup: Setup, processor: Processor, counter: OutputCounter) -> None:
    """One lead through, so that the processor has joined its group before measuring."""
    await publish_fast(bench.bootstrap, setup.input, [(WARMUP_KEY, orjson.dumps({"id": "warmup"}))])
    try:
        await counter.wait_for(1, bench.sizes.deadline, lambda: processor.alive, what="warm-up outputs")
    except (RuntimeError, TimeoutError) as exc:
        raise failed(processor, exc) from exc


async def paced(bench: Bench, label: str, setup: Setup, rate: float, seconds: float) -> int:
    """Publish at ``rate`` for ``seconds`` with a progress bar; how many were sent."""
    task = bench.task(f"{label}: {seconds:g} s paced at {rate:.0f}/s", round(rate * seconds))
    count = await publish_paced(bench.bootstrap, setup.input, leads(setup.topic), rate, seconds,
                                lambda n: bench.progress.update(task, completed=n))  # fmt: skip
    bench.progress.update(task, total=count, completed=count)
    return count


async def added_latency(bench: Bench, kind: str) -> dict[str, Any]:
    """Paced leads; e2e = output CreateTime - input CreateTime, minus the partner's time."""
    sizes = bench.sizes
    rate = bench.rate_for(kind, sizes.p4_rate, 0.5)
    setup = bench.setup("P4", kind, sizes.concurrency)
    bench.partner.reset(error_rate=sizes.error_rate, record_durations=True)
    await bench.topics(setup)
    processor = start(kind, setup, bench.workdir)
    try:
        async with OutputCounter(bench.bootstrap, setup.outputs) as counter:
            await warm_up(bench, setup, processor, counter)
            count = await paced(bench, f"P4 {kind}", setup, rate, sizes.p4_seconds)
            await counter.wait_for(count + 1, sizes.deadline, lambda: processor.alive)
    except (RuntimeError, TimeoutError) as exc:
        raise failed(processor, exc) from exc
    finally:
        processor.stop()
    records = await read_all(bench.bootstrap, [setup.input, *setup.outputs], 2 * (count + 1))
    sent_at = {r.key: r.timestamp_ms for r in records if r.topic == setup.input}
    partner_ms = bench.partner.durations_ms
    e2e: list[float] = []
    added: list[float] = []
    for record in records:
        if record.topic == setup.input or record.key == WARMUP_KEY or record.key is None:
            continue
        total = float(record.timestamp_ms - sent_at[record.key])
        e2e.append(total)
        added.append(total - partner_ms[record.key.decode()])
    return {"rate": round(rate, 1), "leads": count, "e2e_ms": percentiles_ms(e2e),
            "partner_ms": percentiles_ms(partner_ms[k.decode()] for k in sent_at if k != WARMUP_KEY),
            "added_ms": percentiles_ms(added)}  # fmt: skip


async def p4_latency(bench: Bench) -> dict[str, Any]:
    sides = {kind: await added_latency(bench, kind) for kind in KINDS}
    return {"rate_basis": bench.rate_basis(bench.sizes.p4_rate, 0.5), **sides}


async def memory(bench: Bench, kind: str) -> dict[str, Any]:
    """RSS every 0.5 s while the processor is kept busy for ``p5_seconds``, with bursts of
    large leads (``p5_large`` each, around and above the 1 MiB lead limit) at even
    intervals: flat is the final value within ±10 % of the one after the warm-up."""
    sizes = bench.sizes
    rate = bench.rate_for(kind, sizes.p5_rate, 1.0)
    setup = bench.setup("P5", kind, sizes.concurrency)
    bench.partner.reset(error_rate=sizes.error_rate)
    await create_topics(bench.bootstrap, [setup.input, *setup.outputs], setup.partitions, LARGE_TOPIC_BYTES)
    processor = start(kind, setup, bench.workdir)
    sampler = RssSampler(processor.pid)
    warmup = max(5.0, 0.2 * sizes.p5_seconds)
    bursts = burst_times(sizes, warmup)
    large: list[tuple[float, float]] = []
    try:
        async with OutputCounter(bench.bootstrap, setup.outputs) as counter, \
                OutputCounter(bench.bootstrap, [setup.errors]) as errors:  # fmt: skip
            await warm_up(bench, setup, processor, counter)
            sampler.start()
            pacing = asyncio.ensure_future(paced(bench, f"P5 {kind}", setup, rate, sizes.p5_seconds))
            try:
                for number, at in enumerate(bursts):
                    await asyncio.sleep(max(0.0, at - sampler.elapsed()))
                    large.append(await burst(bench, setup, processor, errors, sampler, number))
                published = await pacing
            finally:
                pacing.cancel()
            await sampler.stop()
            processed = await counter.count() - 1
            if not processor.alive:
                raise RuntimeError("the processor exited during the run")
    except (RuntimeError, TimeoutError) as exc:
        raise failed(processor, exc) from exc
    finally:
        await sampler.stop()
        processor.stop()
    return {"seconds": sizes.p5_seconds, "rate": round(rate, 1), "published": published,
            "large": len(bursts) * sizes.p5_large, "leads": processed, "warmup_s": warmup,
            "bursts_at_s": [round(at, 1) for at in bursts], **sampler.summary(warmup, large)}  # fmt: skip


def burst_times(sizes: Sizes, warmup: float) -> list[float]:
    """When each burst of large leads goes out (seconds after the warm-up lead): evenly
    spaced after the warm-up value, the last one well before the end."""
    if not sizes.p5_large:
        return []
    span = sizes.p5_seconds - warmup
    return [warmup + span * (k + 1) / (sizes.p5_bursts + 1) for k in range(sizes.p5_bursts)]


async def burst(
    bench: Bench, setup: Setup, processor: Processor, errors: OutputCounter, sampler: RssSampler, number: int
) -> tuple[float, float]:
    """Publish one burst of large leads alongside the paced ones; returns when the errors
    topic has one output more for each (every large lead ends there: too large as input
    or as output), as (published, handled) in the sampler's seconds. With --error-rate
    above 0 paced leads go there too, so "handled" may come early."""
    count = bench.sizes.p5_large
    before = await errors.count()
    sent_at = sampler.elapsed()
    await publish_large(bench.bootstrap, setup.input, large_leads(f"{setup.topic}-{number}", count))
    alive = lambda: processor.alive  # noqa: E731
    await errors.wait_for(before + count, bench.sizes.deadline, alive, what="large-lead outputs")
    return sent_at, sampler.elapsed()


async def p5_memory(bench: Bench) -> dict[str, Any]:
    sides = {kind: await memory(bench, kind) for kind in KINDS}
    return {"rate_basis": bench.rate_basis(bench.sizes.p5_rate, 1.0), **sides}


async def f1_flows_per_worker(bench: Bench) -> dict[str, Any]:
    """Worker RSS and idle CPU with 1, 10 and 50 flows (issue 19): flow_count.py."""
    sizes = bench.sizes
    run = Run(bench.bootstrap, bench.partner_url, bench.workdir, bench.run_tag,
              settle=min(10.0, sizes.f1_idle / 2), idle=sizes.f1_idle, deadline=sizes.deadline)  # fmt: skip
    counts = flow_counts(sizes.f1_flows)
    task = bench.task("F1 flows per worker", len(counts))

    def stage(count: int, what: str) -> None:
        bench.progress.update(task, description=f"F1 {count} flow(s): {what}", completed=counts.index(count))

    bench.partner.reset()
    result = await flows_per_worker(run, counts, stage)
    bench.progress.update(task, description="F1 flows per worker", completed=len(counts))
    return result


SCENARIOS = {"P1": p1_overhead, "P2": p2_latency, "P3": p3_rate_limit, "P4": p4_latency, "P5": p5_memory,
             "F1": f1_flows_per_worker}  # fmt: skip
