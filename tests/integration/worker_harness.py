"""Run the real worker (a `leadstreams worker` subprocess) against the real broker
and a real aiohttp partner, on topics of its own."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from partner_api import create_partner_app

from examples.support.process import WorkerProcess, free_port, serve_app

__all__ = ["WorkerRun", "free_port"]

ROOT = Path(__file__).resolve().parents[2]
DEMO_FLOW = ROOT / "examples" / "flows" / "demo.yaml"


@dataclass
class WorkerRun:
    """One worker process on a copy of the demo flow with unique topic names."""

    bootstrap: str
    partner_url: str
    api_key: str
    workdir: Path
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    web_port: int = field(default_factory=free_port)
    partner: web.Application | None = None  # the partner app, to read what it counted
    worker: WorkerProcess | None = None
    extra_args: list[str] = field(default_factory=list)  # e.g. ["--loglevel", "info"] (the last wins)

    @property
    def topics(self) -> dict[str, str]:
        return {kind: f"leads.{kind}.{self.suffix}" for kind in ("incoming", "enriched", "errors")}

    @property
    def log_path(self) -> Path:
        return self.workdir / f"worker-{self.suffix}.log"

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self.worker.process if self.worker else None

    def flow_file(self) -> Path:
        text = DEMO_FLOW.read_text()
        for kind, name in self.topics.items():
            text = text.replace(f"leads.{kind}", name)
        path = self.workdir / f"flow-{self.suffix}.yaml"
        path.write_text(text)
        return path

    def start(self) -> None:
        env = {
            "INTERNAL_API_KEY": self.api_key,
            "PARTNER_URL": self.partner_url,
            "PARTNER_ALLOW_LOOPBACK": "true",
        }
        group = f"it-{self.suffix}"  # a stable instance id: a restart rejoins at once
        args = ["--group-id", group, "--instance-id", f"{group}-0", "--partitions", "3", *self.extra_args]
        self.worker = WorkerProcess(self.flow_file(), self.bootstrap, self.web_port, self.log_path, env, args)
        self.worker.start()

    def assert_alive(self) -> None:
        assert self.worker is not None and self.worker.alive, f"worker exited:\n{self.log_tail()}"

    def stop(self) -> int | None:
        return self.worker.stop() if self.worker else None

    def log_tail(self, lines: int = 40) -> str:
        return self.worker.log_tail(lines) if self.worker else "(not started)"


@asynccontextmanager
async def worker_with_partner(
    bootstrap: str, workdir: Path, partner_delay: float = 0.0, extra_args: Sequence[str] = ()
) -> AsyncIterator[WorkerRun]:
    """The demo partner and one worker on topics of their own; both stopped afterwards."""
    api_key = "it-key-" + uuid.uuid4().hex
    partner = create_partner_app(api_key, delay=partner_delay)
    runner, url = await serve_app(partner)
    run = WorkerRun(bootstrap, url, api_key, workdir, partner=partner, extra_args=list(extra_args))
    run.start()
    try:
        yield run
    finally:
        run.stop()
        await runner.cleanup()
