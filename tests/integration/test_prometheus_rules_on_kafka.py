"""A real Prometheus scrapes a real worker on the real broker and evaluates
deploy/prometheus/rules/recording.yml: the p99 request latency rule yields a number."""

from __future__ import annotations

import asyncio
import math
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest
import yaml
from leads import sample_leads
from worker_harness import WorkerRun, free_port

from agents.kafka_io import publish

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
RECORDING_RULES = ROOT / "deploy" / "prometheus" / "rules" / "recording.yml"
LEADS = 300
WARM_UP = 10
DEADLINE = 90.0  # seconds, for each phase
FLOW, INTEGRATION = "lead-validation", "internal"  # examples/flows/demo.yaml
SELECTOR = f'{{flow="{FLOW}", integration="{INTEGRATION}"}}'
P99 = f"leadstreams:request_duration_seconds:p99{SELECTOR}"
T = TypeVar("T")


@dataclass
class PrometheusRun:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def assert_alive(self) -> None:
        assert self.process.poll() is None, f"prometheus exited:\n{self.log_tail()}"


@pytest.fixture
def prometheus(worker: WorkerRun, tmp_path: Path) -> Iterator[PrometheusRun]:
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.fail("prometheus is not on PATH: run deploy/prometheus/ensure-promtool.sh")
    # 1s scrapes and evaluations: the rules' rate(...[5m]) needs two samples, which
    # then takes seconds, not minutes. The rule file is the real one.
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RECORDING_RULES)],
        "scrape_configs": [
            {
                "job_name": "leadstreams",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [f"127.0.0.1:{worker.web_port}"]}],
            }
        ],
    }
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = tmp_path / "prometheus.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                exe,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    run = PrometheusRun(process, f"http://127.0.0.1:{port}", log_path)
    try:
        yield run
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def query(session: aiohttp.ClientSession, prom: PrometheusRun, expr: str) -> list[float]:
    """The values of an instant query (empty while Prometheus has no data for it)."""
    async with session.get(f"{prom.url}/api/v1/query", params={"query": expr}) as response:
        body = await response.json()
    assert body["status"] == "success", body
    return [float(sample["value"][1]) for sample in body["data"]["result"]]


async def poll(
    what: str,
    probe: Callable[[], Awaitable[T]],
    prom: PrometheusRun,
    worker: WorkerRun,
    timeout: float = DEADLINE,
) -> T:
    """Call the async ``probe`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        prom.assert_alive()
        worker.assert_alive()
        result = await probe()
        if result:
            return result
        assert time.monotonic() < deadline, (
            f"timed out after {timeout}s waiting for {what}\n"
            f"--- worker:\n{worker.log_tail()}\n--- prometheus:\n{prom.log_tail()}"
        )
        await asyncio.sleep(0.25)  # poll interval


async def test_prometheus_records_the_p99_request_latency(
    worker: WorkerRun, prometheus: PrometheusRun
) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

        async def get_ok(url: str) -> bool:
            try:
                async with session.get(url) as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        await poll("prometheus ready", lambda: get_ok(f"{prometheus.url}/-/ready"), prometheus, worker)
        # The liveness page the Kubernetes probe and the compose healthcheck use.
        await poll(
            "worker /healthz",
            lambda: get_ok(f"http://127.0.0.1:{worker.web_port}/healthz"),
            prometheus,
            worker,
        )

        # Warm up first: the worker creates a labelled series at its first observation,
        # and a series whose first scraped value is already final has a rate of 0 (the
        # p99 would stay NaN). Once Prometheus holds a sample of the request histogram,
        # the 300 leads below are an increase it can see.
        topic = worker.topics["incoming"]
        warm = sample_leads(WARM_UP, run_id=f"{worker.suffix}-warm", malformed=0)
        await publish(worker.bootstrap, topic, ((lead.key, lead.value) for lead in warm))
        count = f"sum(leadstreams_request_duration_seconds_count{SELECTOR})"
        await poll(
            "the request histogram in Prometheus",
            lambda: query(session, prometheus, count),
            prometheus,
            worker,
        )

        leads = sample_leads(LEADS, run_id=worker.suffix, malformed=0)
        await publish(worker.bootstrap, topic, ((lead.key, lead.value) for lead in leads))

        async def p99() -> list[float]:
            return [value for value in await query(session, prometheus, P99) if not math.isnan(value)]

        values = await poll(f"a numeric {P99}", p99, prometheus, worker)
        assert len(values) == 1, values  # one series per flow and integration
        (value,) = values
        assert math.isfinite(value) and value > 0, value
        # The demo partner answers at once on loopback: far below the 2s step timeout.
        assert value < 2.0, value

        # Every rule of the file evaluates without error on real data.
        async with session.get(f"{prometheus.url}/api/v1/rules") as response:
            groups = (await response.json())["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        expected = [
            r["record"] for g in yaml.safe_load(RECORDING_RULES.read_text())["groups"] for r in g["rules"]
        ]
        assert sorted(rule["name"] for rule in rules) == sorted(expected)
        broken = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] == "err"}
        assert not broken, broken
