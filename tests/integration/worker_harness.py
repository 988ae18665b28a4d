"""Run the real worker (a `leadstreams worker` subprocess) against the real broker
and a real aiohttp partner, on topics of its own."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
DEMO_FLOW = ROOT / "examples" / "flows" / "demo.yaml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class WorkerRun:
    """One worker process on a copy of the demo flow with unique topic names."""

    bootstrap: str
    partner_url: str
    api_key: str
    workdir: Path
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    web_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def topics(self) -> dict[str, str]:
        return {kind: f"leads.{kind}.{self.suffix}" for kind in ("incoming", "enriched", "errors")}

    @property
    def log_path(self) -> Path:
        return self.workdir / f"worker-{self.suffix}.log"

    def flow_file(self) -> Path:
        text = DEMO_FLOW.read_text()
        for kind, name in self.topics.items():
            text = text.replace(f"leads.{kind}", name)
        path = self.workdir / f"flow-{self.suffix}.yaml"
        path.write_text(text)
        return path

    def start(self) -> None:
        env = {
            **os.environ,
            "INTERNAL_API_KEY": self.api_key,
            "PARTNER_URL": self.partner_url,
            "PARTNER_ALLOW_LOOPBACK": "true",
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "agents.cli",
                    "worker",
                    str(self.flow_file()),
                    "--bootstrap",
                    self.bootstrap,
                    "--web-port",
                    str(self.web_port),
                    "--group-id",
                    f"it-{self.suffix}",
                    "--partitions",
                    "3",
                    "--loglevel",
                    "warning",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )

    def assert_alive(self) -> None:
        assert self.process is not None and self.process.poll() is None, (
            f"worker exited with {self.process and self.process.returncode}:\n{self.log_tail()}"
        )

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


async def start_partner(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a condition until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.05)
