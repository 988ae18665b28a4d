"""`make reliability`: fault injection on the real broker, ending with one line per
scenario and `reliability: in=N out=N lost=0 duplicates=D`.

Scenarios: faults: partner faults (5xx, timeouts, resets, 429 bursts) while the worker
(--guarantee at-least-once) is killed with SIGKILL several times and the broker is
restarted once; exactly_once: the same with --guarantee exactly-once, kills at random
moments, every lead's committed outputs counted by lead id (one each); slow_kills: a
few leads answered only after 1-20 s, the worker killed whenever one of them is at the
head of its partition with later leads written, and the broker restarted once;
shared_limit: two workers in one group sharing a rate limit; fuzz: fuzzed bad inputs;
many_flows: three flows in one worker, one changed three times (once invalid), one removed
and added again while leads flow, counted by lead id (issue 19); secrets never leaving the
run. While waiting, a progress line every 10 s on stderr.
The whole output is kept in the work dir with the worker logs.
Needs LEADSTREAMS_BOOTSTRAP and LEADSTREAMS_KAFKA_STATE (deploy/kafka/with-kafka.sh).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[2]))  # the repository, for examples.support
from exactly_once import scenario_exactly_once
from fault_scenarios import scenario_faults, scenario_slow_kills
from fuzz_and_secrets import scenario_fuzz, scenario_secrets
from group_run import Run, Sizes
from lead_tally import Tally
from limit_scenarios import scenario_loaded, scenario_shared_limit
from many_flows import Size, scenario_many_flows

__all__ = ["SCENARIOS", "Sizes", "main", "run_all"]  # Sizes: for tests/integration (with run_all)

SCENARIOS = ("faults", "exactly_once", "slow_kills", "shared_limit", "loaded", "fuzz", "many_flows")
# run_all's default (the small run of tests/integration/test_resilience_on_kafka.py): many_flows
# has a broker test of its own at the small size (test_many_flows_on_kafka.py), not run twice.
DEFAULT = tuple(name for name in SCENARIOS if name != "many_flows")


async def run_all(
    bootstrap: str,
    state: str,
    sizes: Sizes,
    workdir: Path,
    only: set[str] | None = None,
    loglevel: str = "warning",
) -> tuple[list[str], bool]:
    """The scenarios (``only`` those named, else DEFAULT, in their usual order), then the secrets scan."""
    only = set(DEFAULT) if only is None else only
    lines: list[str] = []
    runs: list[tuple[Run, Tally]] = []

    async def one(scenario: Awaitable[tuple[str, Run, Tally]]) -> tuple[str, list[tuple[Run, Tally]]]:
        line, run, tally = await scenario
        return line, [(run, tally)]

    async def many_flows() -> tuple[str, list[tuple[Run, Tally]]]:
        small = sizes.leads == Sizes.small().leads  # `--small`: the broker test's size
        size = Size.small() if small else Size.full()
        measured = await scenario_many_flows(bootstrap, workdir, size, loglevel)
        return ("" if measured.ok else "FAILED ") + measured.line(), []  # counted by lead id, in its line

    scenarios: dict[str, Callable[[], Awaitable[tuple[str, list[tuple[Run, Tally]]]]]] = {
        "faults": lambda: one(scenario_faults(bootstrap, state, workdir, sizes, loglevel)),
        "exactly_once": lambda: one(scenario_exactly_once(bootstrap, state, workdir, sizes, loglevel)),
        "slow_kills": lambda: one(scenario_slow_kills(bootstrap, state, workdir, sizes, loglevel)),
        "shared_limit": lambda: one(scenario_shared_limit(bootstrap, workdir, sizes)),
        "loaded": lambda: scenario_loaded(bootstrap, workdir, sizes),
        "fuzz": lambda: one(scenario_fuzz(bootstrap, workdir, sizes)),
        "many_flows": many_flows,
    }
    for name in SCENARIOS:
        if name not in only:
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
    only = args.only or set(SCENARIOS)
    _, ok = asyncio.run(run_all(bootstrap, state, sizes, workdir, only, args.worker_loglevel))
    if not ok:
        print(f"FAILED; the work dir is kept: {workdir}", flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
