"""Per-integration protections shared by every step and lead of a worker:
the rate limiter (this worker's share of the group's limit) and the circuit breaker."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from streams.circuit import CircuitBreaker, State
from streams.flow import Flow, Integration
from streams.metrics import Metrics
from streams.ratelimit import Limiter, limiter_for

# The limiter paces when we send; the partner counts when requests arrive, and
# connection set-up and scheduling jitter of a few ms can move a request into the
# next second. Aiming 2 % below the limit keeps every partner-side second under it.
RATE_HEADROOM = 0.98


@dataclass
class IntegrationGuard:
    limiter: Limiter
    circuit: CircuitBreaker | None
    slots: asyncio.Semaphore  # the integration's `concurrency`: requests in flight
    in_flight: int = 0  # requests sent and not yet answered (read by the gauge at scrape)


class Guards:
    def __init__(self, flow: Flow, metrics: Metrics | None = None) -> None:
        self._metrics = metrics
        self._flow = flow.name
        self._share = 1.0
        self._guards: dict[str, IntegrationGuard] = {}
        for integration in flow.integrations.values():
            self._guards[integration.name] = self._build(integration)

    def for_integration(self, integration: Integration) -> IntegrationGuard:
        guard = self._guards.get(integration.name)
        if guard is None:  # a step without a named integration
            guard = self._guards[integration.name] = self._build(integration)
        return guard

    def set_share(self, fraction: float) -> None:
        """This worker's share of the consumer group's partitions, hence of every rate limit."""
        self._share = fraction
        for guard in self._guards.values():
            guard.limiter.set_share(fraction)

    def _build(self, integration: Integration) -> IntegrationGuard:
        rate = integration.rate_limit * RATE_HEADROOM if integration.rate_limit else None
        limiter = limiter_for(rate, integration.burst)
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
                on_change=self._on_change(integration.name),
            )
            if self._metrics is not None:
                self._metrics.circuit_state.labels(self._flow, integration.name).set(State.CLOSED.value)
        guard = IntegrationGuard(limiter, circuit, asyncio.Semaphore(integration.concurrency))
        if self._metrics is not None:  # a plain count per request; the gauge reads it when scraped
            self._metrics.in_flight.labels(self._flow, integration.name).set_function(
                lambda: guard.in_flight
            )
        return guard

    def _on_change(self, name: str):  # type: ignore[no-untyped-def]
        def changed(old: State, new: State) -> None:
            if self._metrics is not None:
                self._metrics.circuit_state.labels(self._flow, name).set(new.value)
                self._metrics.circuit_transitions.labels(self._flow, name, new.name.lower()).inc()

        return changed
