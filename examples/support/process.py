"""A `leadstreams worker` subprocess, for the demo, fault-injection runs and tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class WorkerProcess:
    flow: Path
    bootstrap: str
    web_port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)  # extra worker options, e.g. --group-id
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0  # time.time() of the last start

    def start(self) -> None:
        self.started = time.time()
        with self.log_path.open("ab") as log:
            log.write(f"--- worker started {stamp()} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agents.cli", "worker", str(self.flow), "--bootstrap", self.bootstrap,
                 "--web-port", str(self.web_port), "--loglevel", "warning", *self.args],
                env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            )  # fmt: skip

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()

    def kill(self) -> None:
        """kill -9: no shutdown, no commit; what was in flight is replayed on restart."""
        if self.alive:
            assert self.process is not None
            self.process.kill()
            self.process.wait()
            with self.log_path.open("ab") as log:
                log.write(f"--- worker killed (SIGKILL) {stamp()} ---\n".encode())

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def stamp() -> str:
    """Local wall-clock time to the millisecond, as the worker's log lines show it."""
    return datetime.now().isoformat(sep=" ", timespec="milliseconds")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def serve_app(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve an aiohttp app (a partner stand-in) on a free loopback port; its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a condition until it holds; TimeoutError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)
