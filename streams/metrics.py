"""Prometheus metrics of the engine. The registry is passed in (tests use their own)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
from importlib.resources import files
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector


class _CachedLabels:
    """``labels()`` runs several times per lead; prometheus_client validates, converts and
    locks on every call, so each label combination's child is kept after the first."""

    def labels(self, *values: Any) -> Any:
        children: dict[tuple[Any, ...], Any] = self.__dict__.setdefault("_cached_children", {})
        child = children.get(values)
        if child is None:
            child = children[values] = super().labels(*values)  # type: ignore[misc]
        return child


def forget(metric: Any, *values: Any) -> None:
    """Remove a label combination's series (a flow version no longer running)."""
    metric.__dict__.get("_cached_children", {}).pop(values, None)
    with contextlib.suppress(KeyError):  # never set
        metric.remove(*values)


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


# Every metric: its name, help, labels and buckets (a data table, also read by the docs' test).
METRICS: dict[str, Any] = json.loads(files("schemas").joinpath("metrics.json").read_text(encoding="utf-8"))
KINDS: dict[str, type[Counter | Gauge | Histogram]] = {
    "counter": Counter,
    "gauge": Gauge,
    "histogram": Histogram,
}


class Metrics:
    """Every metric of a worker, on its own registry: one Metrics per registry (a second
    one on the same registry raises prometheus_client's "Duplicated timeseries").

    Each entry of ``schemas/metrics.json`` becomes the attribute of its key
    (``metrics.step_outcomes.labels(flow, step, outcome).inc()``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        for attribute, spec in METRICS["metrics"].items():
            setattr(self, attribute, build_metric(spec, registry))
        self.build_info.labels(package_version()).set(1)
        # The standard process_* (CPU, memory, fds, start time) and python_* (version, GC)
        # series the default registry would have; the worker serves this registry instead.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)

    def __getattr__(self, name: str) -> Any:  # (for type checkers: the table's attributes)
        raise AttributeError(f"no metric {name!r} in schemas/metrics.json")


def build_metric(spec: dict[str, Any], registry: CollectorRegistry) -> Counter | Gauge | Histogram:
    kind = KINDS[spec["type"]]
    if kind is Histogram:
        buckets = spec["buckets"]
        named = METRICS["buckets"].get(buckets) if isinstance(buckets, str) else None
        return Histogram(
            spec["name"], spec["help"], spec["labels"], buckets=named or buckets, registry=registry
        )
    return kind(spec["name"], spec["help"], spec["labels"], registry=registry)


class CacheMetrics:
    """The cache's observer (``streams.cache_index.CacheObserver``) on a worker's metrics."""

    def __init__(self, metrics: Metrics, flow: str) -> None:
        self.metrics = metrics
        self.flow = flow

    def entries(self, integration: str, count: int) -> None:
        self.metrics.cache_entries.labels(self.flow, integration).set(count)

    def evicted(self, integration: str, reason: str, count: int) -> None:
        self.metrics.cache_evictions.labels(self.flow, integration, reason).inc(count)
