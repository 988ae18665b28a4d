"""Per-integration protections shared by every step and lead of a worker:
the rate limiter (this worker's share of the group's limit) and the circuit breaker."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from streams.circuit import CircuitBreaker, State
from streams.flow import Flow, Integration
from streams.metrics import Metrics
from streams.ratelimit import Limiter, limiter_for

log = logging.getLogger("leadstreams.guards")

# The limiter holds the writes to the limit in any window of 1 s + ARRIVAL_JITTER (and paces
# them that much slower): the partner counts requests when they arrive, and from our write to its
# count each request takes a time that varies (the network; the partner's own scheduling, a few ms
# on a loaded machine). A one-second window at the partner then holds at most the limit as long as
# that variation stays under ARRIVAL_JITTER. The price: 3 % below the limit on average.
ARRIVAL_JITTER = 0.03  # s


@dataclass
class IntegrationProtections:
    limiter: Limiter
    circuit: CircuitBreaker | None
    slots: asyncio.Semaphore  # the integration's `concurrency`: requests in flight
    in_flight: int = 0  # requests sent and not yet answered (read by the gauge at scrape)


class Protections:
    def __init__(self, flow: Flow, metrics: Metrics | None = None, keep: Protections | None = None) -> None:
        """``keep``: the protections of the flow's version before a reload; an integration it
        ran as the same object (streams.flow_files.carry_over) keeps its limiter's history,
        circuit and slots, and this worker's share of the limits carries over."""
        self._metrics = metrics
        self._flow = flow.name
        self._share = keep._share if keep is not None else 1.0
        self._protections: dict[str, IntegrationProtections] = {}
        self._integrations = dict(flow.integrations)
        for integration in flow.integrations.values():
            kept = keep._kept(integration) if keep is not None else None
            self._protections[integration.name] = kept or self._build(integration)
        self._show_share()

    def _kept(self, integration: Integration) -> IntegrationProtections | None:
        if self._integrations.get(integration.name) is integration:
            return self._protections.get(integration.name)
        return None

    def for_integration(self, integration: Integration) -> IntegrationProtections:
        protection = self._protections.get(integration.name)
        if protection is None:  # a step without a named integration
            protection = self._protections[integration.name] = self._build(integration)
        return protection

    def set_share(self, fraction: float) -> None:
        """This worker's share of the consumer group's partitions, hence of every rate limit."""
        if fraction == self._share:
            return
        self._share = fraction
        self._show_share()
        for name, protection in self._protections.items():
            protection.limiter.set_share(fraction)
            if protection.limiter.rate is not None:
                limit = protection.limiter.rate / fraction
                log.info("rate limit for %s: this worker's share is now %s/s of %s/s",
                         name, _number(protection.limiter.rate), _number(limit))  # fmt: skip

    def _show_share(self) -> None:
        if self._metrics is not None:
            self._metrics.rate_limit_share.labels(self._flow).set(self._share)

    def _build(self, integration: Integration) -> IntegrationProtections:
        limiter = limiter_for(integration.rate_limit, integration.burst, window=1.0 + ARRIVAL_JITTER)
        limiter.set_share(self._share)
        circuit = None
        if integration.circuit is not None:
            config = integration.circuit
            circuit = CircuitBreaker(
                failure_rate=config.failure_rate,
                window=config.window,
                min_calls=config.min_calls,
                open_for=config.open_for,
                half_open_probes=config.half_open_probes,
            )
            circuit.on_change = self._on_change(integration.name, circuit)
            if self._metrics is not None:
                self._metrics.circuit_state.labels(self._flow, integration.name).set(State.CLOSED.value)
        protection = IntegrationProtections(limiter, circuit, asyncio.Semaphore(integration.concurrency))
        if self._metrics is not None:  # a plain count per request; the gauge reads it when scraped
            self._metrics.in_flight.labels(self._flow, integration.name).set_function(
                lambda: protection.in_flight
            )
        return protection

    def _on_change(self, name: str, circuit: CircuitBreaker):  # type: ignore[no-untyped-def]
        def changed(old: State, new: State) -> None:
            if new is State.OPEN:
                log.warning("circuit of %s opened after %s: %s", name, *_why(circuit))
            elif new is State.CLOSED:
                log.info("circuit of %s closed: a probe succeeded after %gs open", name, circuit.open_for)
            else:
                log.debug("circuit of %s half-open: up to %d probes", name, circuit.half_open_probes)
            if self._metrics is not None:
                self._metrics.circuit_state.labels(self._flow, name).set(new.value)
                self._metrics.circuit_transitions.labels(self._flow, name, new.name.lower()).inc()

        return changed


def _why(circuit: CircuitBreaker) -> tuple[str, str]:
    """("N failures", the reason) for the line of a circuit that just opened."""
    trip = circuit.trip
    if trip is None:
        return "failures", "unknown"
    failures = f"{trip.failures} failure{'s' if trip.failures != 1 else ''}"
    if trip.probe:
        reason = "a half-open probe failed"
    else:
        share = trip.failures / trip.calls
        reason = f"{trip.failures} of {trip.calls} calls within {circuit.window:g}s failed ({share:.0%})"
    return failures, f"{reason}, the last: {trip.reason}" if trip.reason else reason


def _number(value: float) -> str:
    """A rate as people write it: 200, 12.5, 33.33."""
    return f"{value:.2f}".rstrip("0").rstrip(".")
