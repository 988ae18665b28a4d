"""The numbers of the web console's live page, read from the worker's own metrics registry.

The page shows what /metrics serves, so ``LiveStats`` reads the same prometheus_client
``CollectorRegistry`` (one ``collect()`` pass per ``sample()``, restricted to the series it
uses) and computes what the recording rules and alerts of deploy/prometheus/rules compute
(request histograms summed by le over outcome and integration before the quantile; the
alerts' thresholds in streams.live_alerts), over a window of its own samples instead of Prometheus' storage:

- percentiles, error %, alert conditions: the newest sample minus the oldest kept sample
  not older than ``WINDOW_S`` (before that much uptime, the first sample);
- rates: the newest sample minus the oldest of the last ``RATE_WINDOW_S``;
- counts ("requests", "outcomes", "leads", "retries"): cumulative, as /metrics shows them.

Counters are accumulated per aggregate like Prometheus' ``increase()``: a value that went
down between two samples (its series forgotten and born again: a flow removed and re-added)
counts from 0, so no window has a negative delta; a series absent in the old sample counts
from 0.

Memory (bounded whatever the uptime). Samples are kept every call for the last 30 s (at
least 1 s apart: a closer call replaces the newest) and one per 10 s beyond, up to 300 s:
at most ~64 samples. A sample holds, per aggregate, one ``array('d')``: per (flow, step)
the 14 request-duration buckets + errors (15 doubles), per (flow, integration) the same 15,
the auth failures (1) and the limiter wait's 13 buckets, per flow the leads (1). A sample
in which an aggregate did not change shares the previous sample's array, so an idle step
costs a dict slot (~100 B per sample). A step busy on every sample, with its own
integration: ~900 B per sample, ~39 KB in all (measured: 16 recent + 27 older samples at
a 2 s cadence) including its sparkline ring (90 points x 2 doubles = 1.5 KB).
tests/test_live_stats.py checks that it does not grow with uptime.
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from streams.histogram_quantile import histogram_quantile
from streams.live_alerts import WINDOW_MIN, IntegrationWindow, holding
from streams.metrics import METRICS

WINDOW_S = WINDOW_MIN * 60.0  # percentiles, error %, alert conditions (the rules' [5m])
RATE_WINDOW_S = 30.0  # requests/s, leads/s
RECENT_SPACING_S = 1.0  # closer samples replace the newest one
OLDER_SPACING_S = 10.0  # samples older than RATE_WINDOW_S are thinned to this spacing
SPARK_EVERY_S = 10.0
SPARK_POINTS = 90  # 15 minutes

CIRCUIT_NAMES = {0.0: "closed", 1.0: "half-open", 2.0: "open"}


@dataclass(frozen=True)
class StepLayout:
    name: str
    integration: str
    batch: bool = False


@dataclass(frozen=True)
class FlowLayout:
    name: str
    version: str
    steps: tuple[StepLayout, ...] = ()


def _name(key: str) -> str:
    return str(METRICS["metrics"][key]["name"])


def _bounds(key: str) -> tuple[float, ...]:
    buckets = METRICS["metrics"][key]["buckets"]
    if isinstance(buckets, str):
        buckets = METRICS["buckets"][buckets]
    return (*(float(b) for b in buckets), math.inf)


REQUEST = _name("request_duration")
LEAD = _name("lead_duration")
WAIT = _name("limiter_wait")
OUTCOMES = _name("step_outcomes")
RETRIES = _name("retries")
AUTH = _name("auth_failures")
LAG = _name("consumer_lag")
CIRCUIT = _name("circuit_state")
IN_FLIGHT = _name("in_flight")
SHARE = "leadstreams_rate_limit_share"
BATCH_OPEN = "leadstreams_batch_windows_open"

REQUEST_BOUNDS = _bounds("request_duration")
WAIT_BOUNDS = _bounds("limiter_wait")
_NB = len(REQUEST_BOUNDS)  # request arrays: buckets [0, _NB), errors at _NB
_ALL = _NB - 1  # the +Inf bucket = the request count

# Aggregates kept per sample (the key's first item).
_STEP_REQ, _INT_REQ, _INT_AUTH, _INT_WAIT, _FLOW_LEADS = range(5)
_SIZES = {_STEP_REQ: _NB + 1, _INT_REQ: _NB + 1, _INT_AUTH: 1, _INT_WAIT: len(WAIT_BOUNDS), _FLOW_LEADS: 1}

Key = tuple[int, str, str]


@dataclass
class _Current:
    """Values only the newest sample needs (gauges and cumulative counts)."""

    requests: dict[tuple[str, str], float] = field(default_factory=dict)
    step_outcomes: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    lead_outcomes: dict[str, dict[str, float]] = field(default_factory=dict)
    retries: dict[tuple[str, str], float] = field(default_factory=dict)
    circuit: dict[tuple[str, str], float] = field(default_factory=dict)
    in_flight: dict[tuple[str, str], float] = field(default_factory=dict)
    lag: dict[str, float] = field(default_factory=dict)
    share: dict[str, float] = field(default_factory=dict)
    batch_open: dict[tuple[str, str], float] = field(default_factory=dict)


@dataclass
class _Sample:
    t: float
    acc: dict[Key, array[float]]  # monotone (reset-corrected) running totals per aggregate


@dataclass
class _Series:
    """One aggregate's reset detection: its last raw value and its running total."""

    prev: array[float] | None
    acc: array[float]
    seen: float
    spark: array[float] | None = None  # (flow, step) aggregates: [rps, p95_ms] * SPARK_POINTS


class LiveStats:
    """``sample()`` every few seconds (from the event loop: one collect() pass, no I/O),
    ``snapshot(layout)`` for the console's ``/console/api/stats``."""

    def __init__(self, registry: CollectorRegistry, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        sample_names = [f"{REQUEST}_bucket", f"{REQUEST}_count", f"{LEAD}_count", f"{WAIT}_bucket"]
        counters = [OUTCOMES, RETRIES, AUTH]  # (schema names of counters end in _total)
        gauges = [LAG, CIRCUIT, IN_FLIGHT, SHARE, BATCH_OPEN]
        # Only the collectors of these series: the process collector reads /proc, and the
        # console needs none of the _sum/_created samples.
        self._source = registry.restricted_registry([*sample_names, *counters, *gauges])
        self._series: dict[Key, _Series] = {}
        self._recent: deque[_Sample] = deque(maxlen=int(RATE_WINDOW_S / RECENT_SPACING_S) + 3)
        self._older: deque[_Sample] = deque(maxlen=int(WINDOW_S / OLDER_SPACING_S) + 2)
        self._current = _Current()
        self._spark_base: _Sample | None = None
        self._spark_times: deque[float] = deque(maxlen=SPARK_POINTS)
        self._spark_ticks = 0
        self._le: dict[str, int] = {}
        self._wait_le: dict[str, int] = {}
        # collect() (most of sample()'s time) runs outside the lock: sample() may run in a
        # thread (asyncio.to_thread) while the event loop answers snapshot().
        self._lock = threading.Lock()
        self._sampling = threading.Lock()

    # -- sampling -----------------------------------------------------------------------

    def sample(self) -> None:
        # One sampler at a time (the worker's thread, or a first snapshot on the event loop):
        # a late older collection would read as a counter reset and count everything twice.
        with self._sampling:
            raw, current = self._collect()
            with self._lock:
                self._update(raw, current)

    def _update(self, raw: dict[Key, array[float]], current: _Current) -> None:
        now = self.clock()
        self._current = current
        if self._recent and now < self._recent[-1].t:  # the wall clock went back: start over
            self._recent.clear()
            self._older.clear()
            self._spark_base = None
        sample = _Sample(now, self._accumulate(raw, now))
        self._keep(sample)
        self._spark(sample)

    def _collect(self) -> tuple[dict[Key, array[float]], _Current]:
        raw: dict[Key, array[float]] = {}
        cur = _Current()

        def agg(kind: int, a: str, b: str) -> array[float]:
            key = (kind, a, b)
            values = raw.get(key)
            if values is None:
                values = raw[key] = array("d", bytes(8 * _SIZES[kind]))
            return values

        for family in self._source.collect():
            name = family.name
            for s in family.samples:
                labels, value, sname = s.labels, s.value, s.name
                if name == REQUEST:
                    flow, step, integration = labels["flow"], labels["step"], labels["integration"]
                    if sname.endswith("_bucket"):
                        index = self._index(self._le, REQUEST_BOUNDS, labels["le"])
                        agg(_STEP_REQ, flow, step)[index] += value
                        agg(_INT_REQ, flow, integration)[index] += value
                    elif labels["outcome"] == "error":  # _count
                        agg(_STEP_REQ, flow, step)[_NB] += value
                        agg(_INT_REQ, flow, integration)[_NB] += value
                elif name == WAIT:
                    index = self._index(self._wait_le, WAIT_BOUNDS, labels["le"])
                    agg(_INT_WAIT, labels["flow"], labels["integration"])[index] += value
                elif name == LEAD:
                    flow = labels["flow"]
                    agg(_FLOW_LEADS, flow, "")[0] += value
                    outcomes = cur.lead_outcomes.setdefault(flow, {})
                    outcomes[labels["outcome"]] = outcomes.get(labels["outcome"], 0.0) + value
                elif sname == OUTCOMES:
                    outcomes = cur.step_outcomes.setdefault((labels["flow"], labels["step"]), {})
                    outcomes[labels["outcome"]] = outcomes.get(labels["outcome"], 0.0) + value
                elif sname == RETRIES:
                    _add(cur.retries, (labels["flow"], labels["integration"]), value)
                elif sname == AUTH:
                    agg(_INT_AUTH, labels["flow"], labels["integration"])[0] += value
                elif name == LAG:
                    _add(cur.lag, labels["flow"], value)
                elif name == CIRCUIT:
                    cur.circuit[(labels["flow"], labels["integration"])] = value
                elif name == IN_FLIGHT:
                    _add(cur.in_flight, (labels["flow"], labels["integration"]), value)
                elif name == SHARE:
                    cur.share[labels["flow"]] = value
                elif name == BATCH_OPEN:
                    cur.batch_open[(labels["flow"], labels["step"])] = value
        for (kind, flow, step), values in raw.items():
            if kind == _STEP_REQ:
                cur.requests[(flow, step)] = values[_ALL]
        return raw, cur

    @staticmethod
    def _index(cache: dict[str, int], bounds: tuple[float, ...], le: str) -> int:
        index = cache.get(le)
        if index is None:
            index = cache[le] = bounds.index(float(le))
        return index

    def _accumulate(self, raw: dict[Key, array[float]], now: float) -> dict[Key, array[float]]:
        """Running totals that never go down (Prometheus' counter-reset rule per aggregate)."""
        acc: dict[Key, array[float]] = {}
        for key, values in raw.items():
            series = self._series.get(key)
            if series is None:  # a new aggregate counts from 0
                series = self._series[key] = _Series(values, array("d", values), now)
            elif series.prev != values:
                prev = series.prev
                if prev is None or any(v < p for v, p in zip(values, prev, strict=True)):
                    diff: Iterable[float] = values  # reset: the series was born again
                else:
                    diff = (v - p for v, p in zip(values, prev, strict=True))
                series.acc = array("d", (a + d for a, d in zip(series.acc, diff, strict=True)))
                series.prev = values
            series.seen = now
            acc[key] = series.acc
        for key, series in list(self._series.items()):
            if key not in raw:
                series.prev = None  # gone: when it comes back, it counts from 0
                if now - series.seen > WINDOW_S + 2 * OLDER_SPACING_S:
                    del self._series[key]  # out of every window: forget it
        return acc

    def _keep(self, sample: _Sample) -> None:
        recent, older = self._recent, self._older
        if len(recent) >= 2 and sample.t - recent[-1].t < RECENT_SPACING_S:
            recent[-1] = sample
        else:
            recent.append(sample)
        while len(recent) > 2 and recent[0].t < sample.t - RATE_WINDOW_S:
            leaving = recent.popleft()
            if not older or leaving.t - older[-1].t >= OLDER_SPACING_S:
                older.append(leaving)
        while older and older[0].t < sample.t - WINDOW_S:
            older.popleft()

    def _spark(self, sample: _Sample) -> None:
        base = self._spark_base
        if base is None:
            self._spark_base = sample
            return
        elapsed = sample.t - base.t
        if elapsed < SPARK_EVERY_S:
            return
        slot = 2 * (self._spark_ticks % SPARK_POINTS)
        for key, series in self._series.items():
            if key[0] != _STEP_REQ:
                continue
            if series.spark is None:
                series.spark = array("d", [0.0, math.nan] * SPARK_POINTS)
            delta = _delta(key, sample, base)
            count = delta[_ALL] if delta else 0.0
            p95 = _quantile_ms(0.95, REQUEST_BOUNDS, delta) if count else None
            series.spark[slot] = count / elapsed
            series.spark[slot + 1] = math.nan if p95 is None else p95
        self._spark_times.append(sample.t)
        self._spark_ticks += 1
        self._spark_base = sample

    # -- the snapshot ---------------------------------------------------------------------

    def snapshot(self, layout: Sequence[FlowLayout]) -> dict[str, Any]:
        """The stats API's JSON (a dict of plain types); samples once if never sampled."""
        if not self._recent:
            self.sample()
        with self._lock:
            return self._snapshot(layout)

    def _snapshot(self, layout: Sequence[FlowLayout]) -> dict[str, Any]:
        new = self._recent[-1]
        window_base = self._older[0] if self._older else self._recent[0]
        rate_base = self._recent[0]
        rate_dt = new.t - rate_base.t
        alerts = self._alerts(new, window_base)
        by_integration: dict[tuple[str, str], list[str]] = {}
        for alert in alerts:
            if alert["integration"] is not None:
                by_integration.setdefault((alert["flow"], alert["integration"]), []).append(alert["short"])
        cur = self._current
        flows = []
        for flow in layout:
            leads_delta = _delta((_FLOW_LEADS, flow.name, ""), new, rate_base)
            lag = cur.lag.get(flow.name)
            flows.append(
                {
                    "name": flow.name,
                    "version": flow.version,
                    "leads_per_s": _rate(leads_delta[0] if leads_delta else 0.0, rate_dt),
                    "lag": None if lag is None else int(lag),
                    "leads": _ints(cur.lead_outcomes.get(flow.name, {})),
                    "rate_limit_share": cur.share.get(flow.name),
                    "steps": [
                        self._step(flow.name, step, new, window_base, rate_base, by_integration)
                        for step in flow.steps
                    ],
                }
            )
        for alert in alerts:
            del alert["short"]
        return {
            "at": new.t,
            "window_s": int(WINDOW_S),
            "rate_window_s": int(RATE_WINDOW_S),
            "flows": flows,
            "alerts": alerts,
        }

    def _step(
        self,
        flow: str,
        step: StepLayout,
        new: _Sample,
        window_base: _Sample,
        rate_base: _Sample,
        by_integration: dict[tuple[str, str], list[str]],
    ) -> dict[str, Any]:
        cur = self._current
        key = (_STEP_REQ, flow, step.name)
        window = _delta(key, new, window_base)
        in_window = window[_ALL] if window else 0.0
        rates = _delta(key, new, rate_base)
        wait = _delta((_INT_WAIT, flow, step.integration), new, window_base)
        pair = (flow, step.integration)
        circuit = cur.circuit.get(pair)
        batch_open = cur.batch_open.get((flow, step.name)) if step.batch else None
        return {
            "name": step.name,
            "integration": step.integration,
            "requests": int(cur.requests.get((flow, step.name), 0.0)),
            "requests_per_s": _rate(rates[_ALL] if rates else 0.0, new.t - rate_base.t),
            "p50_ms": _quantile_ms(0.50, REQUEST_BOUNDS, window) if in_window else None,
            "p95_ms": _quantile_ms(0.95, REQUEST_BOUNDS, window) if in_window else None,
            "p99_ms": _quantile_ms(0.99, REQUEST_BOUNDS, window) if in_window else None,
            "outcomes": _ints(cur.step_outcomes.get((flow, step.name), {})),
            "error_pct": window[_NB] / in_window * 100 if window and in_window else None,
            "retries": int(cur.retries.get(pair, 0.0)),
            "circuit": None if circuit is None else CIRCUIT_NAMES.get(circuit, "open"),
            "limiter_wait_p95_ms": _quantile_ms(0.95, WAIT_BOUNDS, wait) if wait and wait[-1] else None,
            "in_flight": int(cur.in_flight.get(pair, 0.0)),
            "batch_windows_open": None if batch_open is None else int(batch_open),
            "alerts": by_integration.get(pair, []),
            "spark": self._spark_points(self._series.get(key)),
        }

    def _spark_points(self, series: _Series | None) -> list[list[float | None]]:
        times = self._spark_times
        first = self._spark_ticks - len(times)
        points: list[list[float | None]] = []
        for i, t in enumerate(times):
            if series is None or series.spark is None:
                points.append([t, 0.0, None])
                continue
            slot = 2 * ((first + i) % SPARK_POINTS)
            p95 = series.spark[slot + 1]
            points.append([t, series.spark[slot], None if math.isnan(p95) else p95])
        return points

    def _alerts(self, new: _Sample, base: _Sample) -> list[dict[str, Any]]:
        """The conditions of alerts.yml on the window (streams.live_alerts)."""
        windows: dict[tuple[str, str], IntegrationWindow] = {}
        for key in new.acc:
            kind, flow, integration = key
            if kind not in (_INT_REQ, _INT_AUTH):
                continue
            delta = _delta(key, new, base)
            if not delta:
                continue
            window = windows.setdefault((flow, integration), IntegrationWindow())
            if kind == _INT_AUTH:
                window.auth_failures = delta[0]
            elif delta[_ALL]:
                window.requests, window.errors = delta[_ALL], delta[_NB]
                window.p95_s = histogram_quantile(0.95, list(zip(REQUEST_BOUNDS, delta, strict=False)))
        return holding(windows, self._current.circuit, self._current.lag)


def _add(target: dict[Any, float], key: Any, value: float) -> None:
    target[key] = target.get(key, 0.0) + value


def _ints(values: dict[str, float]) -> dict[str, int]:
    return {name: int(value) for name, value in sorted(values.items())}


def _rate(delta: float, seconds: float) -> float:
    return delta / seconds if seconds > 0 else 0.0


def _delta(key: Key, new: _Sample, old: _Sample) -> list[float] | None:
    """new - old of one aggregate (absent in old: from 0; absent in new: None)."""
    values = new.acc.get(key)
    if values is None:
        return None
    before = old.acc.get(key)
    if before is None:
        return list(values)
    if before is values:
        return [0.0] * len(values)
    return [max(0.0, v - b) for v, b in zip(values, before, strict=True)]


def _quantile_ms(q: float, bounds: tuple[float, ...], window: list[float] | None) -> float | None:
    if not window:
        return None
    seconds = histogram_quantile(q, list(zip(bounds, window, strict=False)))
    return None if seconds is None else seconds * 1000
