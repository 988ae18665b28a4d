"""`make bench` at its smallest (--quick) on the real broker: it runs every scenario to the
end and its last stdout line is one JSON document holding every figure. Not a timed
test: nothing here says how fast anything must be."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import orjson
import pytest

from examples.support.process import ROOT

pytestmark = pytest.mark.kafka

SCRIPT = ROOT / "examples" / "bench" / "run_bench.py"
PCTS = ("p50", "p95", "p99")
EXACTLY_ONCE = [f"exactly_once.{name}" for name in ("leads_s", "at_least_once_leads_s", "ratio")] + [
    f"exactly_once.{kind}.{p}" for kind in ("received_to_visible_ms", "at_least_once_received_to_visible_ms")
    for p in PCTS
]  # fmt: skip
FIGURES: dict[str, list[str]] = {
    # exactly_once: the worker on --guarantee exactly-once beside at-least-once (issue 18)
    "P1": ["leads", "concurrency", "baseline_leads_s", "worker_leads_s", "ratio", *EXACTLY_ONCE],
    "P2": ["leads", "concurrency", "partner_latency_ms", "baseline_leads_s", "worker_leads_s",
           "latency_bound_leads_s", "bound_leads_s", "ratio_to_bound", *EXACTLY_ONCE],
    "P3": ["limit", "target_seconds"] + [
        f"{run}.{name}" for run in ("one_worker", "two_workers")
        for name in ("workers", "partitions", "leads", "requests", "max_1s", "max_over_limit",
                     "mean_rate", "mean_over_limit", "seconds")
    ],
    "P4": [f"{side}.{name}" for side in ("baseline", "worker") for name in ("rate", "leads")] + [
        f"{side}.{kind}.{p}" for side in ("baseline", "worker")
        for kind in ("e2e_ms", "partner_ms", "added_ms") for p in PCTS
    ],
    "P5": [
        f"{side}.{name}" for side in ("baseline", "worker")
        for name in ("seconds", "rate", "published", "leads", "warmup_s", "peak_rss_mib",
                     "final_rss_mib", "warm_rss_mib", "final_over_warm")
    ],
}  # fmt: skip


def figure(results: dict[str, Any], scenario: str, path: str) -> Any:
    value: Any = results[scenario]
    for part in path.split("."):
        assert isinstance(value, dict) and part in value, f"{scenario}.{path} missing in {results[scenario]}"
        value = value[part]
    return value


@pytest.mark.timeout(600)
def test_bench_quick_reports_every_figure(kafka_bootstrap: str) -> None:
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        env={**os.environ, "LEADSTREAMS_BOOTSTRAP": kafka_bootstrap},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-4000:]
    lines = completed.stdout.strip().splitlines()
    results = orjson.loads(lines[-1])
    assert results["meta"]["quick"] is True and results["meta"]["wall_s"] > 0
    for scenario, paths in FIGURES.items():
        assert "error" not in results[scenario], results[scenario]
        for path in paths:
            value = figure(results, scenario, path)
            is_number = isinstance(value, int | float) and not isinstance(value, bool)
            assert is_number and value > 0, f"{scenario}.{path} = {value!r}"
    for side in ("baseline", "worker"):
        assert isinstance(results["P5"][side]["flat"], bool)
    # The table was printed before the JSON line, with a row per scenario.
    for label in ("P1 overhead", "P2 latency", "P3 limit", "P4 latency", "P5 memory"):
        assert label in completed.stdout
    for scenario in ("P1", "P2"):
        assert f"{scenario} exactly-once: " in completed.stdout
