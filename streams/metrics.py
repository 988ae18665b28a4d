"""Prometheus metrics of the engine. The registry is passed in (tests use their own)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

# HTTP calls: milliseconds to tens of seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
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
        self.bad_inputs = Counter(
            "leadstreams_bad_inputs_total",
            "Input messages that were not usable leads.",
            ["flow"],
            registry=registry,
        )
