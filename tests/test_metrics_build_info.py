"""The worker's registry carries the build info and the standard process_*/python_* series."""

from __future__ import annotations

import importlib.metadata

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from streams.metrics import Metrics


def exposition(registry: CollectorRegistry) -> list[str]:
    return [line for line in generate_latest(registry).decode().splitlines() if not line.startswith("#")]


def test_build_info_names_the_installed_version() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    version = importlib.metadata.version("leadstreams")
    assert f'leadstreams_build_info{{version="{version}"}} 1.0' in exposition(registry)


def test_process_and_python_collectors_are_on_the_given_registry() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    names = {line.split("{")[0].split(" ")[0] for line in exposition(registry)}
    assert {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "python_info",
        "python_gc_collections_total",
    } <= names


def test_one_metrics_per_registry() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Metrics(registry)
    Metrics(CollectorRegistry())  # another registry: no clash with the first one
    assert sum(line.startswith("leadstreams_build_info") for line in exposition(registry)) == 1
