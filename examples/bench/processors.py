"""The two processors under test, each a subprocess on topics of its own:
the leadstreams worker (``leadstreams worker FLOW``) and the hand-written baseline."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from examples.support.process import ROOT, WorkerProcess, free_port

HERE = Path(__file__).resolve().parent
FLOW_TEMPLATE = HERE / "flows" / "bench.yaml"
BASELINE = HERE / "baseline.py"
WORKER, BASE = "worker", "baseline"
AT_LEAST_ONCE, EXACTLY_ONCE = "at-least-once", "exactly-once"
OWNS = re.compile(r"this worker owns (\d+)/\d+ input partitions")


@dataclass(frozen=True)
class Setup:
    """What both sides share in a scenario run."""

    bootstrap: str
    partner_url: str
    topic: str  # prefix: TOPIC.in -> TOPIC.enriched / TOPIC.errors
    group: str
    concurrency: int
    batch_size: int
    partitions: int
    rate_limit: float | None = None  # requests/s for the whole group (worker only)
    # The worker's --guarantee, always given: P3-P5 and the worker-vs-baseline figures stay
    # at-least-once whatever the worker's default; P1/P2 add an exactly-once run (issue 18).
    guarantee: str = AT_LEAST_ONCE

    @property
    def input(self) -> str:
        return f"{self.topic}.in"

    @property
    def errors(self) -> str:
        return f"{self.topic}.errors"

    @property
    def outputs(self) -> list[str]:
        return [f"{self.topic}.enriched", self.errors]


def render_flow(setup: Setup, workdir: Path) -> Path:
    """The bench flow with this run's concurrency, pool size and rate limit."""
    flow: dict[str, Any] = yaml.safe_load(FLOW_TEMPLATE.read_text())
    partner = flow["integrations"]["partner"]
    partner["concurrency"] = setup.concurrency
    partner["pool"]["size"] = setup.concurrency
    if setup.rate_limit is not None:
        partner["rate_limit"] = f"{setup.rate_limit:g}/s"
    path = workdir / f"{setup.topic}.yaml"
    path.write_text(yaml.safe_dump(flow, sort_keys=False))
    return path


@dataclass
class Processor:
    """One running processor (either side); ``pid`` for RSS sampling."""

    kind: str
    log_path: Path
    worker: WorkerProcess | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        popen = self.worker.process if self.worker else self.process
        assert popen is not None
        return popen.pid

    @property
    def alive(self) -> bool:
        if self.worker is not None:
            return self.worker.alive
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 30) -> None:
        if self.worker is not None:
            self.worker.stop(timeout)
        elif self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def owned_partitions(self) -> int | None:
        """Input partitions this worker owned at its last rebalance (needs --loglevel info)."""
        found = OWNS.findall(self.log_path.read_text(errors="replace")) if self.log_path.exists() else []
        return int(found[-1]) if found else None

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_worker(setup: Setup, workdir: Path, index: int = 0, extra: Sequence[str] = ()) -> Processor:
    flow = render_flow(setup, workdir)
    log_path = workdir / f"{setup.topic}-worker{index}.log"
    env = {"BENCH_TOPIC": setup.topic, "PARTNER_URL": setup.partner_url}
    # e.g. "PYTHONMALLOC=malloc MALLOC_ARENA_MAX=2": the worker's environment only, to try settings
    env |= dict(item.split("=", 1) for item in os.environ.get("BENCH_WORKER_ENV", "").split())
    tried = os.environ.get("BENCH_WORKER_ARGS", "").split()  # e.g. "--max-in-flight 300", to try options
    args = ["--group-id", setup.group, "--batch-size", str(setup.batch_size),
            "--partitions", str(setup.partitions), "--no-create-topics", "--guarantee", setup.guarantee,
            *tried, *extra]  # fmt: skip
    worker = WorkerProcess(flow, setup.bootstrap, free_port(), log_path, env, args)
    worker.start()
    return Processor(WORKER, log_path, worker=worker)


def start_baseline(setup: Setup, workdir: Path) -> Processor:
    log_path = workdir / f"{setup.topic}-baseline.log"
    command = [sys.executable, str(BASELINE), "--bootstrap", setup.bootstrap, "--topic", setup.topic,
               "--group", setup.group, "--url", setup.partner_url,
               "--concurrency", str(setup.concurrency), "--batch-size", str(setup.batch_size)]  # fmt: skip
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ}
        )
    return Processor(BASE, log_path, process=process)


def start(kind: str, setup: Setup, workdir: Path) -> Processor:
    return start_worker(setup, workdir) if kind == WORKER else start_baseline(setup, workdir)
