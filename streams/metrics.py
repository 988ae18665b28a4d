"""Prometheus metrics of the engine. The registry is passed in (tests use their own)."""

from __future__ import annotations

import importlib.metadata
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

# HTTP calls: milliseconds to tens of seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _CachedLabels:
    """``labels()`` runs several times per lead; prometheus_client validates, converts and
    locks on every call, so each label combination's child is kept after the first."""

    def labels(self, *values: Any) -> Any:
        children: dict[tuple[Any, ...], Any] = self.__dict__.setdefault("_cached_children", {})
        child = children.get(values)
        if child is None:
            child = children[values] = super().labels(*values)  # type: ignore[misc]
        return child


class Counter(_CachedLabels, prometheus_client.Counter):
    pass


class Gauge(_CachedLabels, prometheus_client.Gauge):
    pass


class Histogram(_CachedLabels, prometheus_client.Histogram):
    pass


def package_version() -> str:
    """The installed distribution's version ("unknown" when run from a bare source tree)."""
    try:
        return importlib.metadata.version("leadstreams")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class Metrics:
    """Every metric of a worker, on its own registry: one Metrics per registry (a second
    one on the same registry raises prometheus_client's "Duplicated timeseries")."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.build_info = Gauge(
            "leadstreams_build_info",
            "Always 1; the running leadstreams version.",
            ["version"],
            registry=registry,
        )
        self.build_info.labels(package_version()).set(1)
        # The standard process_* (CPU, memory, fds, start time) and python_* (version, GC)
        # series the default registry would have; the worker serves this registry instead.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self.request_duration = Histogram(
            "leadstreams_request_duration_seconds",
            "Duration of a step's HTTP exchange, including auth round-trips.",
            ["flow", "step", "integration", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.lead_duration = Histogram(
            "leadstreams_lead_duration_seconds",
            "Time from receiving a lead to its outcome being decided.",
            ["flow", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.end_to_end = Histogram(
            "leadstreams_end_to_end_seconds",
            "From the input message's Kafka timestamp to its output acknowledged by Kafka.",
            ["flow", "topic"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "leadstreams_consumer_lag",
            "Messages behind the partition's high watermark after the last written batch.",
            ["flow", "topic", "partition"],
            registry=registry,
        )
        self.batch_size = Histogram(
            "leadstreams_batch_size",
            "Leads per batch: `fetch` = taken from Kafka and processed together.",
            ["flow", "kind"],
            buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
            registry=registry,
        )
        self.step_outcomes = Counter(
            "leadstreams_step_outcomes_total",
            "Step outcomes.",
            ["flow", "step", "outcome"],
            registry=registry,
        )
        self.leads_written = Counter(
            "leadstreams_leads_written_total",
            "Output messages acknowledged by Kafka, per topic.",
            ["flow", "topic"],
            registry=registry,
        )
        self.retries = Counter(
            "leadstreams_retries_total",
            "Inline retries of a request.",
            ["flow", "integration", "reason"],
            registry=registry,
        )
        self.timeouts = Counter(
            "leadstreams_timeouts_total",
            "Requests that timed out.",
            ["flow", "integration"],
            registry=registry,
        )
        self.http_responses = Counter(
            "leadstreams_http_responses_total",
            "Partner responses by status class.",
            ["flow", "integration", "status_class"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "leadstreams_fallbacks_total",
            "Fallback chain sources that answered.",
            ["flow", "step", "source"],
            registry=registry,
        )
        self.cache_lookups = Counter(
            "leadstreams_cache_lookups_total",
            "Fallback cache lookups.",
            ["flow", "step", "result"],
            registry=registry,
        )
        self.cache_entries = Gauge(
            "leadstreams_cache_entries",
            "Entries in the fallback cache, by integration (each worker holds them all).",
            ["flow", "integration"],
            registry=registry,
        )
        self.cache_evictions = Counter(
            "leadstreams_cache_evictions_total",
            "Cache entries deleted by this worker: expired, full (oldest past max_entries), "
            "unused (of no integration the flow caches).",
            ["flow", "integration", "reason"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "leadstreams_auth_failures_total",
            "401/403 after the auth flow's own retry, and token failures.",
            ["flow", "integration"],
            registry=registry,
        )
        self.deferred = Counter(
            "leadstreams_deferred_total",
            "Leads sent to the delayed retry topics.",
            ["flow"],
            registry=registry,
        )
        self.limiter_wait = Histogram(
            "leadstreams_rate_limit_wait_seconds",
            "Time a request waited for the rate limiter.",
            ["flow", "integration"],
            buckets=(0, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.in_flight = Gauge(
            "leadstreams_requests_in_flight",
            "Requests sent and not yet answered.",
            ["flow", "integration"],
            registry=registry,
        )
        self.circuit_state = Gauge(
            "leadstreams_circuit_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ["flow", "integration"],
            registry=registry,
        )
        self.circuit_transitions = Counter(
            "leadstreams_circuit_transitions_total",
            "Circuit breaker state changes.",
            ["flow", "integration", "to"],
            registry=registry,
        )
        self.bad_inputs = Counter(
            "leadstreams_bad_inputs_total",
            "Input messages that were not usable leads.",
            ["flow"],
            registry=registry,
        )
        self.batch_leads = Histogram(
            "leadstreams_batch_window_leads",
            "Leads per batch request of a `batch:` step (one tumbling window).",
            ["flow", "step"],
            buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000),
            registry=registry,
        )
        self.batch_fill = Histogram(
            "leadstreams_batch_window_fill_seconds",
            "From a window's first lead to its close (full, timed out or flushed).",
            ["flow", "step"],
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
            registry=registry,
        )
        self.batch_request_duration = Histogram(
            "leadstreams_batch_request_duration_seconds",
            "A batch request as a whole (retries, waits and fallbacks included), by result: "
            "`answered`, `substituted` (fallback chain) or `failed`.",
            ["flow", "step", "integration", "result"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


class CacheMetrics:
    """The cache's observer (``streams.cache_index.CacheObserver``) on a worker's metrics."""

    def __init__(self, metrics: Metrics, flow: str) -> None:
        self.metrics = metrics
        self.flow = flow

    def entries(self, integration: str, count: int) -> None:
        self.metrics.cache_entries.labels(self.flow, integration).set(count)

    def evicted(self, integration: str, reason: str, count: int) -> None:
        self.metrics.cache_evictions.labels(self.flow, integration, reason).inc(count)
