"""Health on the real broker: the broker stops and comes back under a running worker.

/ready goes 200 -> 503 while Kafka is away and 503 -> 200 when it is back, by itself;
the log stays readable meanwhile (a few WARNING lines per 30 s, no ERROR from a normal
start to the stop); no lead is lost. Stops, each within 5 s and without a traceback,
through the real CLI: a worker gets SIGTERM while the broker is hung (SIGSTOP), another
while it is away, and the first gets SIGINT at the end with Kafka up (after committing).
"""

from __future__ import annotations

import asyncio
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aiohttp
import orjson
import pytest
from leads import sample_leads
from worker_harness import WorkerRun, worker_with_partner

from agents.kafka_io import Record, collect, end_offsets, publish
from examples.support.process import wait_for

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]
AWAY = 35.0  # seconds the broker stays away: more than one 30 s fold window of the log policy
LOG_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] (\w+) ")


@dataclass
class ReadyWatch:
    """Polls /ready; keeps each change of its answer with the time it was first seen."""

    url: str
    transitions: list[tuple[float, str]] = field(default_factory=list)

    @property
    def state(self) -> str:
        return self.transitions[-1][1] if self.transitions else "none"

    async def run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                try:
                    async with session.get(self.url) as response:
                        body = await response.json()
                        # "for 31s" -> "for Ns": a change of reasons, not of every second
                        reasons = re.sub(r"\d+s\b", "Ns", "; ".join(body.get("reasons", [])))
                        state = f"{response.status} {reasons}".strip()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    state = f"no answer ({type(exc).__name__})"
                if state != self.state:
                    self.transitions.append((time.time(), state))
                await asyncio.sleep(0.25)

    def report(self) -> list[str]:
        return [f"{datetime.fromtimestamp(at).isoformat(timespec='milliseconds')} /ready {state}"
                for at, state in self.transitions]  # fmt: skip


def log_lines(path: Path, since: float, until: float, levels: set[str]) -> list[str]:
    """The worker's log lines at ``levels`` stamped within [since, until) (local time)."""
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if (match := LOG_LINE.match(line)) and match[2] in levels:
            stamp = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if since <= stamp < until:
                found.append(line)
    return found


def broker_running(state: str) -> bool:
    pid = Path(state, "pid")
    alive = pid.exists() and subprocess.run(["kill", "-0", pid.read_text().strip()], capture_output=True)
    return bool(alive) and alive.returncode == 0


def start_broker_again(state: str, bootstrap: str) -> None:
    """The same broker (ports, data) again: restart.sh reads the address from the state
    directory, which stop.sh cleared."""
    Path(state, "bootstrap").write_text(bootstrap + "\n")
    restart = [str(ROOT / "deploy/kafka/restart.sh"), state]
    subprocess.run(restart, check=True, capture_output=True, timeout=180)


INFO = ["--loglevel", "info"]
HELD_COMMITS = [*INFO, "--commit-interval", "600", "--commit-count", "100000"]


async def all_outputs(run: WorkerRun, expected: int) -> list[Record]:
    topics = run.topics

    def done(records: list[Record]) -> bool:
        return len({r.key for r in records if r.topic != topics["incoming"]}) >= expected

    records = await collect(run.bootstrap, [topics["enriched"], topics["errors"]], done, timeout=120)
    return [r for r in records if r.topic != topics["incoming"]]


async def outputs_in_the_open_transaction(run: WorkerRun, expected: int, timeout: float = 60) -> None:
    """Its outputs written (the high watermarks), not committed: its commits are held off."""
    topics = [run.topics["enriched"], run.topics["errors"]]
    deadline = time.monotonic() + timeout
    while sum((await end_offsets(run.bootstrap, topics, stable=False)).values()) < expected:
        assert time.monotonic() < deadline, f"fewer than {expected} outputs written\n{run.log_tail()}"
        await asyncio.sleep(0.2)


async def stop_with(run: WorkerRun, sent: signal.Signals) -> float:
    """Send ``sent``; the seconds until the process exited (fails past 10 s)."""
    assert run.process is not None
    started = time.monotonic()
    run.process.send_signal(sent)
    process = run.process
    await wait_for(lambda: process.poll() is not None, 10, f"the worker's exit on {sent.name}")
    return time.monotonic() - started


@dataclass
class Outage:
    """The moments of the scenario (time.time()) and each stop's seconds to the exit."""

    stopped: float = 0.0  # the broker stopped
    back: float = 0.0  # restart.sh started
    answering: float = 0.0  # restart.sh returned: its port answers
    recovered: float = 0.0  # /ready 200 again
    hung_exit: float = 0.0  # SIGTERM with the broker hung
    other_exit: float = 0.0  # SIGTERM with it away
    main_exit: float = 0.0  # SIGINT with it up

    def print_times(self, watch: ReadyWatch) -> None:
        print("", *watch.report(), sep="\n")
        print(f"broker stopped {datetime.fromtimestamp(self.stopped)}, "
              f"started again {datetime.fromtimestamp(self.back)} "
              f"(its port answered {self.answering - self.back:.1f}s later), "
              f"/ready 200 {self.recovered - self.answering:.1f}s after that")  # fmt: skip


async def stop_while_the_broker_hangs(state: str, run: WorkerRun) -> float:
    """A hung broker (SIGSTOP: its connections stay open, nothing answers): the stop starts
    as usual and is cut off at its bound. The seconds to the exit."""
    broker_pid = int(Path(state, "pid").read_text())
    os.kill(broker_pid, signal.SIGSTOP)
    try:
        return await stop_with(run, signal.SIGTERM)
    finally:
        os.kill(broker_pid, signal.SIGCONT)


async def broker_away_and_back(
    state: str, bootstrap: str, watch: ReadyWatch, main: WorkerRun, other: WorkerRun, outage: Outage
) -> None:
    """Stop the broker; once /ready says 503, SIGTERM ``other``; AWAY seconds after the
    stop, start the broker again and wait for /ready 200."""
    outage.stopped = time.time()
    subprocess.run([str(ROOT / "deploy/kafka/stop.sh"), state], check=True, capture_output=True)
    await wait_for(lambda: watch.state.startswith("503"), 30, f"/ready 503\n{main.log_tail()}")
    outage.other_exit = await stop_with(other, signal.SIGTERM)
    # The scenario, not a synchronisation: the broker stays away this long.
    await asyncio.sleep(max(0.0, outage.stopped + AWAY - time.time()))
    outage.back = time.time()
    start_broker_again(state, bootstrap)
    outage.answering = time.time()
    await wait_for(lambda: watch.state.startswith("200"), 90, f"/ready 200 again\n{main.log_tail()}")
    outage.recovered = time.time()


def assert_log_while_away(main: WorkerRun, outage: Outage) -> None:
    """A few WARNING lines per 30 s while Kafka was away, and no ERROR from the start to the stop."""
    stopped, back = outage.stopped, outage.back
    away = [log_lines(main.log_path, since, since + 30, {"WARNING", "ERROR", "CRITICAL"})
            for since in (stopped, stopped + 30) if since + 30 <= back + 5]  # fmt: skip
    print("\n".join(f"warnings in 30 s window {index}: {len(lines)}" for index, lines in enumerate(away)))
    assert away and all(len(lines) <= 15 for lines in away), away
    assert not log_lines(main.log_path, 0, time.time() + 1, {"ERROR", "CRITICAL"})
    main_log = main.log_path.read_text()
    assert "not ready: " in main_log and "ready again after " in main_log


def assert_stops_quick_and_clean(main: WorkerRun, other: WorkerRun, third: WorkerRun, outage: Outage) -> None:
    """SIGTERM with Kafka hung or away, SIGINT with Kafka up; all quick and without a traceback."""
    hung_exit, other_exit, main_exit = outage.hung_exit, outage.other_exit, outage.main_exit
    main_log, other_log, third_log = (run.log_path.read_text() for run in (main, other, third))
    print(f"SIGTERM with the broker hung: exit after {hung_exit:.2f}s; with it away: {other_exit:.2f}s; "
          f"SIGINT with it up: {main_exit:.2f}s")  # fmt: skip
    assert hung_exit <= 5 and other_exit <= 5 and main_exit <= 5
    [hung_line] = [line for line in third_log.splitlines() if "exiting without a commit" in line]
    print(hung_line)
    assert "(the stop did not finish within 4.5s of SIGTERM)" in hung_line
    [exit_line] = [line for line in other_log.splitlines() if "exiting without a commit" in line]
    print(exit_line)
    assert "(SIGTERM while Kafka is unreachable)" in exit_line
    will = r": (\d+ leads read since the last commit \(\d+ in flight\) will be processed again|no lead was)"
    assert re.search(will, exit_line), exit_line
    assert "stopping (SIGINT)" in main_log and "stopped: committed " in main_log, main_log[-3000:]
    for text in (main_log, other_log, third_log):
        for noise in ("Traceback", "-INT-", "Unclosed"):
            assert noise not in text, text[-3000:]
    assert main.process is not None and main.process.returncode == 0
    assert other.process is not None and other.process.returncode == 0
    assert third.process is not None and third.process.returncode == 0


@pytest.mark.timeout(300)
async def test_ready_follows_the_broker_away_and_back_and_stops_are_quick(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    state = os.environ.get("LEADSTREAMS_KAFKA_STATE")
    assert state, "run through `make test` (deploy/kafka/with-kafka.sh sets LEADSTREAMS_KAFKA_STATE)"
    outage = Outage()
    async with (
        worker_with_partner(kafka_bootstrap, tmp_path, extra_args=INFO) as main,
        worker_with_partner(kafka_bootstrap, tmp_path, extra_args=INFO) as other,
        # Commits held off: its stop has something to commit while the broker hangs.
        worker_with_partner(kafka_bootstrap, tmp_path, extra_args=HELD_COMMITS) as third,
    ):
        watch = ReadyWatch(f"http://127.0.0.1:{main.web_port}/ready")
        watching = asyncio.ensure_future(watch.run())
        try:
            await wait_for(lambda: watch.state.startswith("200"), 90, f"/ready 200\n{main.log_tail()}")
            first = sample_leads(100, run_id=f"{main.suffix}-a", malformed=5)
            for run in (main, other, third):
                await publish(kafka_bootstrap, run.topics["incoming"], [(x.key, x.value) for x in first])
            for run in (main, other):
                assert len(await all_outputs(run, 100)) >= 100
            await outputs_in_the_open_transaction(third, 100)

            outage.hung_exit = await stop_while_the_broker_hangs(state, third)
            await broker_away_and_back(state, kafka_bootstrap, watch, main, other, outage)

            second = sample_leads(100, run_id=f"{main.suffix}-b", malformed=5)
            await publish(kafka_bootstrap, main.topics["incoming"], [(x.key, x.value) for x in second])
            outputs = await all_outputs(main, 200)
            await wait_for(lambda: "ready again after " in main.log_path.read_text(), 10, "the ready line")
            watching.cancel()  # the stop below ends the answers
            outage.main_exit = await stop_with(main, signal.SIGINT)
        finally:
            watching.cancel()
            if not broker_running(state):  # the other tests of the session need it
                start_broker_again(state, kafka_bootstrap)

    outage.print_times(watch)
    codes = [state.split()[0] for _, state in watch.transitions]
    ready = codes.index("200")
    assert "503" in codes[ready:] and codes[-1] == "200", watch.report()

    # Nothing lost: every lead of both batches has an output.
    ids = {orjson.loads(r.value).get("id") for r in outputs}
    assert {lead.lead_id for lead in first + second if lead.lead_id} <= ids
    assert len({r.key for r in outputs}) >= 200

    # The log while Kafka was away, then the stops.
    assert_log_while_away(main, outage)
    assert_stops_quick_and_clean(main, other, third, outage)


async def test_json_logs_are_json_lines_on_a_terminal_too(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Faust's worker draws a spinner and prints to a terminal; with --log-format json every
    line on a tty is JSON, from the first to the stop."""
    run = WorkerRun(kafka_bootstrap, "http://127.0.0.1:1", "key", tmp_path)
    primary, secondary = pty.openpty()
    env = {**os.environ, "INTERNAL_API_KEY": "key", "PARTNER_URL": "http://127.0.0.1:1",
           "PARTNER_ALLOW_LOOPBACK": "true"}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "agents.cli", "worker", str(run.flow_file()), "--bootstrap", kafka_bootstrap,
         "--web-port", str(run.web_port), "--group-id", f"tty-{run.suffix}", "--log-format", "json"],
        stdin=secondary, stdout=secondary, stderr=secondary, cwd=ROOT, env=env,
    )  # fmt: skip
    os.close(secondary)
    output = bytearray()

    def read_some() -> None:
        while select.select([primary], [], [], 0)[0]:
            try:
                output.extend(os.read(primary, 65536))
            except OSError:  # the worker closed the terminal
                return

    try:
        await wait_for(lambda: (read_some(), b'"started: ' in output)[1], 90, "the started line")
        process.send_signal(signal.SIGINT)
        await wait_for(lambda: (read_some(), process.poll() is not None)[1], 10, "the exit")
        read_some()
    finally:
        if process.poll() is None:
            process.kill()
        os.close(primary)
    lines = [line for line in output.decode(errors="replace").replace("\r", "").splitlines() if line.strip()]
    entries = [orjson.loads(line) for line in lines]  # fails on the first line that is not JSON
    messages = [entry["message"] for entry in entries]
    assert any(m.startswith("started: ") for m in messages), messages
    assert any(m.startswith("stopped: ") for m in messages), messages
    assert process.returncode == 0
