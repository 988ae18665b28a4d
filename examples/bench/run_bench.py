"""`make bench`: the leadstreams worker side by side with a hand-written aiokafka +
aiohttp baseline on a real local Kafka and a local partner API.

P1 overhead-bound throughput, P2 latency-bound throughput (50 ms partner), P3
rate-limit precision (worker only, one then two workers), P4 latency the processor
adds, P5 memory over a time cap with bursts of 1-2 MB leads (--p5-long: 10 minutes),
F1 flows per worker: RSS and idle CPU of one worker with 1, 10 and 50 small flows.
Prints progress, a table, and as the last line of stdout one JSON document with every
figure. Needs LEADSTREAMS_BOOTSTRAP (`make bench` starts a broker and sets it).
Sizes: see --help; --quick is tiny.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))  # kernel_stamps
sys.path.append(str(Path(__file__).resolve().parents[2]))  # the repository, for examples.support
from kernel_stamps import serve_stamped
from partner import PartnerState, create_partner
from report import print_report
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from scenarios import SCENARIOS, Bench, Sizes

console = Console(width=None if sys.stdout.isatty() else 160)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default = Sizes()
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes (smoke test); the flags below still apply"
    )
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios to run, e.g. P1,P4")
    parser.add_argument(
        "--p5-long", action="store_true", help="P5: 600 s, 3 bursts of large leads (other flags apply)"
    )
    flags: list[tuple[str, type, str]] = [
        ("p1_leads", int, "P1 leads"),
        ("p2_leads", int, "P2 leads"),
        ("p2_latency", float, "P2 partner latency, seconds"),
        ("p2_concurrency", int, "P2 requests in flight (both sides)"),
        ("p3_rate", float, "P3 rate limit, requests/s for the group"),
        ("p3_seconds", float, "P3 seconds of leads at the limit"),
        ("p3_partitions", int, "P3 input partitions"),
        ("p4_seconds", float, "P4 seconds of paced publishing per side"),
        ("p4_rate", float, "P4 leads/s (default: half of each side's P1)"),
        ("p5_seconds", float, "P5 time cap per side, seconds"),
        ("p5_rate", float, "P5 leads/s published (default: each side's P1)"),
        ("p5_large", int, "P5 large leads per burst, 1-2 MB, half over the 1 MiB limit (0: none)"),
        ("p5_bursts", int, "P5 bursts of large leads, evenly spread"),
        ("f1_flows", int, "F1 most flows in one worker (counts: 1, a fifth, all)"),
        ("f1_idle", float, "F1 idle window per count, seconds"),
        ("concurrency", int, "requests in flight in P1, P4, P5 (both sides)"),
        ("batch_size", int, "worker --batch-size and baseline getmany max_records"),
        ("partitions", int, "partitions of the input and output topics"),
        ("error_rate", float, "share of partner answers that are HTTP 422"),
        ("deadline", float, "seconds to wait for one run's outputs"),
    ]
    for name, kind, text in flags:
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None,
                            help=f"{text} (default {getattr(default, name)})")  # fmt: skip
    args = parser.parse_args(argv)
    only = [name.strip().upper() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in only if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    args.only = only
    base = Sizes.quick() if args.quick else default
    if args.p5_long:
        base = base.long_p5()
    given = {name: getattr(args, name) for name, _, _ in flags if getattr(args, name) is not None}
    args.sizes = dataclasses.replace(base, **given)
    return args


async def run(bootstrap: str, args: argparse.Namespace) -> int:
    started = time.monotonic()
    results: dict[str, Any] = {}
    timings: dict[str, float] = {}
    loads: dict[str, float] = {"start": os.getloadavg()[0]}
    state = PartnerState()
    runner, url = await serve_stamped(create_partner(state))
    workdir = Path(tempfile.mkdtemp(prefix="leadstreams-bench-"))
    console.print(f"partner at {url}; broker {bootstrap}; logs in {workdir}; "
                  f"{os.cpu_count()} CPUs, load average {loads['start']:.2f}", soft_wrap=True)  # fmt: skip
    failures = 0
    try:
        with Progress(
            TextColumn("{task.description:<44}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            bench = Bench(bootstrap, state, url, workdir, args.sizes, progress)
            for name in args.only:
                began = time.monotonic()
                try:
                    results[name] = await SCENARIOS[name](bench)
                except Exception as exc:
                    failures += 1
                    results[name] = {"error": f"{type(exc).__name__}: {exc}"}
                    console.print(f"[red]{name} failed[/]:\n{traceback.format_exc()}", soft_wrap=True)
                timings[name] = round(time.monotonic() - began, 1)
                loads[name] = round(os.getloadavg()[0], 2)
    finally:
        await runner.cleanup()
    results["meta"] = {
        "wall_s": round(time.monotonic() - started, 1), "scenario_s": timings, "load1": loads,
        "cpus": os.cpu_count(), "quick": args.quick, "sizes": dataclasses.asdict(args.sizes),
    }  # fmt: skip
    print_report(console, results)
    return 1 if failures else 0


def main() -> None:
    args = parse_args()
    bootstrap = os.environ.get("LEADSTREAMS_BOOTSTRAP")
    if not bootstrap:
        sys.exit("LEADSTREAMS_BOOTSTRAP is not set: run `make bench` (it starts a local Kafka)")
    sys.exit(asyncio.run(run(bootstrap, args)))


if __name__ == "__main__":
    main()
