"""The console's live numbers (streams.live_stats) against the registry's own text exposition,
and Prometheus' histogram_quantile (streams.histogram_quantile) against a brute-force one."""

from __future__ import annotations

import itertools
import json
import math
import re
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams import live_alerts, live_stats
from streams.histogram_quantile import histogram_quantile
from streams.live_stats import FlowLayout, LiveStats, StepLayout
from streams.metrics import Metrics, forget

ALERTS_YML = Path(__file__).resolve().parent.parent / "deploy/prometheus/rules/alerts.yml"

# -- histogram_quantile ----------------------------------------------------------------------


def cumulative(bounds: list[float], values: list[float]) -> list[tuple[float, float]]:
    return [(b, float(sum(1 for v in values if v <= b))) for b in [*bounds, math.inf]]


def reference_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """The smallest x whose piecewise-linear cumulative count reaches q * total, found by
    bisecting x over that function (not by looking the rank up in the buckets)."""
    finite = buckets[:-1]
    total = buckets[-1][1]
    rank = q * total
    start = 0.0 if finite[0][0] > 0 else finite[0][0]
    points = [(start, 0.0 if finite[0][0] > 0 else finite[0][1]), *finite]

    def count_at(x: float) -> float:
        for (x0, c0), (x1, c1) in itertools.pairwise(points):
            if x <= x1:
                return c0 + (c1 - c0) * (x - x0) / (x1 - x0)
        return points[-1][1]

    if count_at(points[-1][0]) < rank:
        return points[-1][0]  # the rank is in the +Inf bucket
    low, high = start, points[-1][0]
    for _ in range(200):
        middle = (low + high) / 2
        if count_at(middle) >= rank:
            high = middle
        else:
            low = middle
    return high


bounds_strategy = st.lists(
    st.floats(min_value=0.001, max_value=100, allow_nan=False), min_size=1, max_size=12, unique=True
).map(sorted)


@settings(max_examples=300, deadline=None)
@given(
    bounds=bounds_strategy,
    values=st.lists(st.floats(min_value=0, max_value=150), min_size=1, max_size=60),
    q=st.floats(min_value=0.001, max_value=1),
)
def test_quantile_matches_the_brute_force_inverse_of_the_bucket_cdf(
    bounds: list[float], values: list[float], q: float
) -> None:
    buckets = cumulative(bounds, values)
    got = histogram_quantile(q, buckets)
    assert got is not None
    assert got == pytest.approx(reference_quantile(q, buckets), rel=1e-6, abs=1e-9)
    # ... and lies in the bucket of the exact quantile of the raw observations.
    exact = sorted(values)[max(0, math.ceil(q * len(values)) - 1)]
    upper = next(b for b in [*bounds, math.inf] if exact <= b)
    lower = max([0.0, *(b for b in bounds if b < upper)])
    assert lower - 1e-9 <= got <= (upper if upper != math.inf else bounds[-1]) + 1e-9


@settings(max_examples=100, deadline=None)
@given(bounds=bounds_strategy, values=st.lists(st.floats(0, 150), max_size=40))
def test_quantile_is_monotonic_in_q(bounds: list[float], values: list[float]) -> None:
    buckets = cumulative(bounds, values)
    answers = [histogram_quantile(q / 20, buckets) for q in range(1, 21)]
    if not values:
        assert answers == [None] * 20
    else:
        assert answers == sorted(answers)  # type: ignore[type-var]


def test_quantile_by_hand() -> None:
    buckets = [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (math.inf, 40.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1 + 0.4 * (20 - 10) / 20)  # 0.3
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.1, buckets) == pytest.approx(0.04)  # from 0 in the first bucket
    # a rank in +Inf -> the last finite bound
    assert histogram_quantile(0.99, [(1.0, 1.0), (2.0, 1.0), (math.inf, 100.0)]) == 2.0
    # a first bound of 0 answers 0 for ranks inside it (the limiter-wait buckets)
    assert histogram_quantile(0.5, [(0.0, 8.0), (0.001, 10.0), (math.inf, 10.0)]) == 0.0
    # unsorted input, duplicate bounds merged, non-monotonic counts forced up
    assert histogram_quantile(0.5, [(math.inf, 4.0), (2.0, 4.0), (1.0, 1.0), (1.0, 1.0)]) == pytest.approx(
        1.0
    )
    assert histogram_quantile(0.5, [(1.0, 4.0), (2.0, 3.0), (math.inf, 4.0)]) == pytest.approx(0.5)


def test_quantile_without_an_answer() -> None:
    assert histogram_quantile(0.5, [(1.0, 0.0), (math.inf, 0.0)]) is None  # no observations
    assert histogram_quantile(0.5, [(1.0, 3.0), (2.0, 3.0)]) is None  # no +Inf
    assert histogram_quantile(0.5, [(math.inf, 3.0)]) is None  # one bucket
    assert histogram_quantile(math.nan, [(1.0, 3.0), (math.inf, 3.0)]) is None
    assert histogram_quantile(-0.1, [(1.0, 3.0), (math.inf, 3.0)]) == -math.inf
    assert histogram_quantile(1.1, [(1.0, 3.0), (math.inf, 3.0)]) == math.inf


# -- LiveStats against the exposition ------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_764_612_000.0

    def __call__(self) -> float:
        return self.now


def exposition(registry: CollectorRegistry) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)] as a scraper reads /metrics."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def scraped_buckets(text: dict[str, Any], name: str, **match: str) -> list[tuple[float, float]]:
    """sum by (le) of the matching series' buckets (the recording rules' aggregation)."""
    by_le: dict[float, float] = {}
    for labels, value in text[f"{name}_bucket"]:
        if all(labels.get(k) == v for k, v in match.items()):
            le = float(labels["le"])
            by_le[le] = by_le.get(le, 0.0) + value
    return sorted(by_le.items())


def scraped_sum(text: dict[str, Any], name: str, **match: str) -> float:
    return sum(v for labels, v in text.get(name, []) if all(labels.get(k) == x for k, x in match.items()))


@pytest.fixture
def world() -> tuple[Metrics, CollectorRegistry, Clock, LiveStats]:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    clock = Clock()
    stats = LiveStats(registry, clock=clock)
    stats.sample()  # the worker's sample at start, before any lead
    return metrics, registry, clock, stats


LAYOUT = [
    FlowLayout(
        "demo",
        "abc123",
        (
            StepLayout("check", "blacklist"),
            StepLayout("price", "pricer", batch=True),
            StepLayout("idle", "none"),
        ),
    )
]


def step_of(snapshot: dict[str, Any], name: str, flow: str = "demo") -> dict[str, Any]:
    found = next(f for f in snapshot["flows"] if f["name"] == flow)
    return next(s for s in found["steps"] if s["name"] == name)


def drive(metrics: Metrics) -> None:
    m = metrics
    for value in (0.003, 0.02, 0.02, 0.07, 0.3, 0.3, 0.9, 3.0):
        m.request_duration.labels("demo", "check", "blacklist", "success").observe(value)
    for value in (0.04, 12.0):
        m.request_duration.labels("demo", "check", "blacklist", "error").observe(value)
    m.request_duration.labels("demo", "check", "blacklist_backup", "failure").observe(0.6)
    for value in (0.2, 0.2, 0.4):
        m.request_duration.labels("demo", "price", "pricer", "success").observe(value)
    m.step_outcomes.labels("demo", "check", "success").inc(8)
    m.step_outcomes.labels("demo", "check", "error").inc(2)
    m.step_outcomes.labels("demo", "check", "skip").inc(1)
    m.lead_duration.labels("demo", "success").observe(0.5)
    m.lead_duration.labels("demo", "error").observe(13)
    m.retries.labels("demo", "blacklist", "timeout").inc(2)
    m.retries.labels("demo", "blacklist", "status").inc(1)
    m.limiter_wait.labels("demo", "blacklist").observe(0.0)
    m.limiter_wait.labels("demo", "blacklist").observe(0.003)
    m.in_flight.labels("demo", "blacklist").set(2)
    m.circuit_state.labels("demo", "blacklist").set(1)
    m.consumer_lag.labels("demo", "leads", "0").set(40)
    m.consumer_lag.labels("demo", "leads", "1").set(2)
    m.rate_limit_share.labels("demo").set(0.5)
    m.batch_windows_open.labels("demo", "price").set(1)


def test_the_numbers_are_those_of_the_exposition(world: Any) -> None:
    metrics, registry, clock, stats = world
    drive(metrics)
    clock.now += 2
    stats.sample()
    text = exposition(registry)
    snap = stats.snapshot(LAYOUT)
    assert snap["at"] == clock.now and snap["window_s"] == 300 and snap["rate_window_s"] == 30
    json.dumps(snap, allow_nan=False)  # plain JSON, as the route sends it

    check = step_of(snap, "check")
    buckets = scraped_buckets(text, "leadstreams_request_duration_seconds", flow="demo", step="check")
    for q, field in ((0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")):
        assert check[field] == pytest.approx(histogram_quantile(q, buckets) * 1000)  # type: ignore[operator]
    count = scraped_sum(text, "leadstreams_request_duration_seconds_count", flow="demo", step="check")
    errors = scraped_sum(
        text, "leadstreams_request_duration_seconds_count", flow="demo", step="check", outcome="error"
    )
    assert check["requests"] == count == 11
    assert check["requests_per_s"] == pytest.approx(count / 2)
    assert check["error_pct"] == pytest.approx(errors / count * 100)
    assert check["outcomes"] == {"error": 2, "skip": 1, "success": 8}
    assert check["retries"] == scraped_sum(text, "leadstreams_retries_total", integration="blacklist") == 3
    assert check["circuit"] == "half-open" and check["in_flight"] == 2
    wait = scraped_buckets(text, "leadstreams_rate_limit_wait_seconds", integration="blacklist")
    assert check["limiter_wait_p95_ms"] == pytest.approx(histogram_quantile(0.95, wait) * 1000)  # type: ignore[operator]
    assert check["batch_windows_open"] is None  # not a batch step

    price = step_of(snap, "price")
    assert price["requests"] == 3 and price["batch_windows_open"] == 1 and price["error_pct"] == 0
    assert price["circuit"] is None and price["limiter_wait_p95_ms"] is None

    idle = step_of(snap, "idle")  # no traffic: still listed, with nulls and zeros
    assert idle["requests"] == 0 and idle["requests_per_s"] == 0 and idle["outcomes"] == {}
    assert idle["p50_ms"] is idle["p95_ms"] is idle["p99_ms"] is idle["error_pct"] is None

    flow = snap["flows"][0]
    assert flow["version"] == "abc123" and flow["lag"] == 42 and flow["rate_limit_share"] == 0.5
    assert flow["leads"] == {"error": 1, "success": 1}
    assert flow["leads_per_s"] == pytest.approx(2 / 2)


def test_absent_gauges_are_null(world: Any) -> None:
    _metrics, _registry, _clock, stats = world
    flow = stats.snapshot(LAYOUT)["flows"][0]
    assert flow["lag"] is None and flow["rate_limit_share"] is None and flow["leads"] == {}
    assert step_of(stats.snapshot(LAYOUT), "price")["batch_windows_open"] is None


def test_percentiles_forget_observations_older_than_the_window(world: Any) -> None:
    metrics, _registry, clock, stats = world
    slow = metrics.request_duration.labels("demo", "check", "blacklist", "success")
    for _ in range(20):
        slow.observe(8.0)
    clock.now += 2
    stats.sample()
    assert step_of(stats.snapshot(LAYOUT), "check")["p95_ms"] > 5000  # counted from the first sample
    for _ in range(100):  # 200 s of 2 s samples, fast requests only
        slow.observe(0.02)
        clock.now += 2
        stats.sample()
    assert step_of(stats.snapshot(LAYOUT), "check")["p95_ms"] > 5000  # 20 of 120 still in the window
    for _ in range(100):  # 400 s in all
        slow.observe(0.02)
        clock.now += 2
        stats.sample()
    check = step_of(stats.snapshot(LAYOUT), "check")
    assert check["p95_ms"] < 50  # the slow ones left the window
    assert check["requests"] == 220  # counts stay cumulative
    assert check["requests_per_s"] == pytest.approx(0.5)  # one per 2 s
    for _ in range(160):  # idle for longer than the window
        clock.now += 2
        stats.sample()
    check = step_of(stats.snapshot(LAYOUT), "check")
    assert check["p95_ms"] is None and check["error_pct"] is None and check["requests_per_s"] == 0
    assert check["requests"] == 220


def test_rates_are_over_the_last_30_seconds(world: Any) -> None:
    metrics, _registry, clock, stats = world
    child = metrics.request_duration.labels("demo", "check", "blacklist", "success")
    for _ in range(30):  # 10 requests/s for 60 s, sampled every 2 s
        for _ in range(20):
            child.observe(0.01)
        clock.now += 2
        stats.sample()
    for _ in range(5):  # then 1 request/s for 10 s
        for _ in range(2):
            child.observe(0.01)
        clock.now += 2
        stats.sample()
    rate = step_of(stats.snapshot(LAYOUT), "check")["requests_per_s"]
    assert rate == pytest.approx((10 * 20 + 5 * 2) / 30)


def test_a_removed_and_re_added_flow_has_no_negative_window(world: Any) -> None:
    metrics, _registry, clock, stats = world
    for _ in range(50):
        metrics.request_duration.labels("demo", "check", "blacklist", "success").observe(3.0)
    metrics.auth_failures.labels("demo", "blacklist").inc(2)
    clock.now += 2
    stats.sample()
    forget(metrics.request_duration, "demo", "check", "blacklist", "success")
    forget(metrics.auth_failures, "demo", "blacklist")
    clock.now += 2
    stats.sample()
    for _ in range(4):  # the flow is back, its counters start at 0
        metrics.request_duration.labels("demo", "check", "blacklist", "error").observe(0.01)
    metrics.auth_failures.labels("demo", "blacklist").inc(2)
    clock.now += 2
    stats.sample()
    snap = stats.snapshot(LAYOUT)
    check = step_of(snap, "check")
    assert check["requests"] == 4  # as /metrics shows it now
    # the window holds the 50 before the removal and the 4 after: none lost, none negative
    assert check["error_pct"] == pytest.approx(4 / 54 * 100)
    assert check["requests_per_s"] == pytest.approx(54 / 6)
    # 2 + 2 auth failures > 3, and 4 errors of 54 requests > 5 %
    assert [a["alert"] for a in snap["alerts"]] == ["LeadstreamsAuthFailures", "LeadstreamsHighErrorRate"]


def test_sparkline_points_every_10_s_at_most_90(world: Any) -> None:
    metrics, _registry, clock, stats = world
    child = metrics.request_duration.labels("demo", "check", "blacklist", "success")
    for i in range(1000):  # 2000 s
        child.observe(0.02 if i % 2 else 0.3)
        clock.now += 2
        stats.sample()
    spark = step_of(stats.snapshot(LAYOUT), "check")["spark"]
    assert len(spark) == 90
    times = [point[0] for point in spark]
    assert times[-1] == clock.now and all(b - a == 10 for a, b in itertools.pairwise(times))
    assert all(point[1] == pytest.approx(0.5) for point in spark)  # 5 requests per 10 s
    assert all(250 <= point[2] <= 500 for point in spark)  # type: ignore[operator]
    idle = step_of(stats.snapshot(LAYOUT), "idle")["spark"]
    assert [p[0] for p in idle] == times and all(p[1:] == [0.0, None] for p in idle)


def test_memory_is_bounded_whatever_the_uptime() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    clock = Clock()
    stats = LiveStats(registry, clock=clock)
    children = [
        metrics.request_duration.labels(f"f{f}", f"s{s}", f"i{s}", "success")
        for f in range(2)
        for s in range(2)
    ]

    def run(samples: int) -> None:
        for _ in range(samples):
            for child in children:  # every step busy on every sample: the worst case
                child.observe(0.02)
            clock.now += 2
            stats.sample()

    tracemalloc.start()
    try:
        run(200)  # past the window: every kept sample was made here
        first = tracemalloc.get_traced_memory()[0]
        run(200)
        second = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert abs(second - first) < 5_000, (first, second)  # no growth with uptime
    per_step = _retained(stats) / len(children)
    assert per_step < 50_000, per_step  # the module docstring's "~45 KB per busy step"


def _retained(stats: LiveStats) -> int:
    """Bytes held by the samples and sparklines (arrays counted once)."""
    import sys

    seen: set[int] = set()
    total = 0
    for sample in [*stats._recent, *stats._older]:
        total += sys.getsizeof(sample.acc)
        for values in sample.acc.values():
            if id(values) not in seen:
                seen.add(id(values))
                total += sys.getsizeof(values)
    for series in stats._series.values():
        total += sys.getsizeof(series.prev) + sys.getsizeof(series.spark)
    return total


# -- alerts ------------------------------------------------------------------------------------


def alerts_of(stats: LiveStats, clock: Clock) -> tuple[list[tuple[str, str | None]], dict[str, Any]]:
    clock.now += 2
    stats.sample()
    snap = stats.snapshot(LAYOUT)
    return [(a["alert"], a["integration"]) for a in snap["alerts"]], snap


def test_each_alert_on_and_off(world: Any) -> None:
    metrics, _registry, clock, stats = world
    assert alerts_of(stats, clock)[0] == []

    slow = metrics.request_duration.labels("demo", "check", "blacklist", "success")
    for _ in range(10):
        slow.observe(7.0)
    fired, snap = alerts_of(stats, clock)
    assert fired == [("LeadstreamsSlowPartner", "blacklist")]
    assert snap["alerts"][0]["condition"] == "p95 > 5 s over 5 min" and snap["alerts"][0]["value"].endswith(
        " s"
    )
    assert step_of(snap, "check")["alerts"] == ["p95 > 5 s"]
    assert step_of(snap, "price")["alerts"] == []
    for _ in range(200):  # the slow ones age out
        slow.observe(0.01)
        clock.now += 2
        stats.sample()
    assert alerts_of(stats, clock)[0] == []

    errors = metrics.request_duration.labels("demo", "check", "blacklist", "error")
    for _ in range(11):  # 11 of the 161 requests in the window: 6.8 % > 5 %
        errors.observe(0.01)
    fired, snap = alerts_of(stats, clock)
    assert fired == [("LeadstreamsHighErrorRate", "blacklist")]
    assert step_of(snap, "check")["alerts"] == ["errors > 5 %"]
    for _ in range(160):
        clock.now += 2
        stats.sample()
    assert alerts_of(stats, clock)[0] == []  # no traffic in the window: never fires

    metrics.auth_failures.labels("demo", "blacklist").inc(3)
    assert alerts_of(stats, clock)[0] == []  # 3 is not > 3
    metrics.auth_failures.labels("demo", "blacklist").inc(1)
    fired, snap = alerts_of(stats, clock)
    assert fired == [("LeadstreamsAuthFailures", "blacklist")]
    assert step_of(snap, "check")["alerts"] == ["auth failures > 3 in 5 min"]
    assert snap["alerts"][0]["value"] == "4"
    for _ in range(160):
        clock.now += 2
        stats.sample()
    assert alerts_of(stats, clock)[0] == []

    metrics.consumer_lag.labels("demo", "leads", "0").set(600)
    metrics.consumer_lag.labels("demo", "leads", "1").set(400)
    assert alerts_of(stats, clock)[0] == []  # 1000 is not > 1000
    metrics.consumer_lag.labels("demo", "leads", "1").set(401)
    fired, snap = alerts_of(stats, clock)
    assert fired == [("LeadstreamsConsumerLag", None)] and snap["alerts"][0]["value"] == "1001"
    metrics.consumer_lag.labels("demo", "leads", "1").set(0)

    metrics.circuit_state.labels("demo", "pricer").set(1)
    assert alerts_of(stats, clock)[0] == []
    metrics.circuit_state.labels("demo", "pricer").set(2)
    fired, snap = alerts_of(stats, clock)
    assert fired == [("LeadstreamsCircuitOpen", "pricer")]
    assert (
        step_of(snap, "price")["alerts"] == ["circuit open"] and step_of(snap, "price")["circuit"] == "open"
    )
    metrics.circuit_state.labels("demo", "pricer").set(0)
    assert alerts_of(stats, clock)[0] == []


def test_thresholds_are_those_of_the_alert_rules() -> None:
    rules = {
        rule["alert"]: rule["expr"]
        for group in yaml.safe_load(ALERTS_YML.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    ours = {
        "LeadstreamsSlowPartner": (">", live_alerts.SLOW_P95_S),
        "LeadstreamsHighErrorRate": (">", live_alerts.ERROR_RATIO),
        "LeadstreamsAuthFailures": (">", live_alerts.AUTH_FAILURES),
        "LeadstreamsConsumerLag": (">", live_alerts.CONSUMER_LAG),
        "LeadstreamsCircuitOpen": ("==", live_alerts.CIRCUIT_OPEN),
    }
    for alert, (operator, threshold) in ours.items():
        found = re.search(r"(>|==)\s*([0-9.]+)\s*$", rules[alert].strip())
        assert found, rules[alert]
        assert (found[1], float(found[2])) == (operator, threshold), alert
    assert "[5m]" in rules["LeadstreamsAuthFailures"] and live_stats.WINDOW_S == 300


def test_sample_takes_little_time_for_50_flows_of_5_steps() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    stats = LiveStats(registry)
    for f in range(50):
        for s in range(5):
            for outcome in ("success", "failure", "error", "skip"):
                metrics.request_duration.labels(f"f{f}", f"s{s}", f"i{s}", outcome).observe(0.02)
            metrics.step_outcomes.labels(f"f{f}", f"s{s}", "success").inc()
            metrics.limiter_wait.labels(f"f{f}", f"i{s}").observe(0.001)
    stats.sample()
    durations = []
    for _ in range(5):
        start = time.perf_counter()
        stats.sample()
        durations.append(time.perf_counter() - start)
    # ~100 ms on the 2-core CI machine, most of it prometheus_client's own collect()
    assert min(durations) < 1.0


def test_quantiles_are_those_prometheus_itself_computes(tmp_path: Path) -> None:
    """streams.histogram_quantile against the real Prometheus engine: a promtool rule test
    that expects our answers for cumulative buckets of the latency histogram's bounds
    (interpolation, the first bucket, a rank in +Inf, empty buckets between full ones)."""
    import random

    from deploy_helpers import promtool

    from streams.metrics import METRICS

    les = [*map(float, METRICS["buckets"]["latency"]), math.inf]
    rng = random.Random(20)
    cases = []
    for case in range(12):
        counts = [rng.choice([0, 0, 1, 3, 17, 250]) for _ in les]
        if case == 0:
            counts = [0] * (len(les) - 1) + [5]  # every observation past the last bound
        cumulative = list(itertools.accumulate(counts))
        for q in (0.5, 0.95, 0.99):
            ours = histogram_quantile(q, list(zip(les, cumulative, strict=True)))
            if ours is not None:
                cases.append((case, q, cumulative, ours))
    series, exprs = [], []
    for case, cumulative in {c: cum for c, _, cum, _ in cases}.items():
        for le, count in zip(les, cumulative, strict=True):
            le_text = "+Inf" if le == math.inf else repr(le)
            series.append({"series": f'h_bucket{{case="{case}",le="{le_text}"}}', "values": f"0 {count}"})
    for case, q, _, ours in cases:
        exprs.append({"expr": f'histogram_quantile({q}, h_bucket{{case="{case}"}})', "eval_time": "1m",
                      "exp_samples": [{"labels": f'{{case="{case}"}}', "value": ours}]})  # fmt: skip
    test_file = tmp_path / "quantiles.test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [], "evaluation_interval": "1m", "tests": [
        {"interval": "1m", "input_series": series, "promql_expr_test": exprs}]}))  # fmt: skip
    result = promtool("test", "rules", str(test_file), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(cases) >= 30
