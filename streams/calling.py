"""Call a partner under the integration's protections: circuit breaker, rate limiter,
auth flow, and the status policy's inline retries."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp

from streams.activity import FlowActivity
from streams.auth import NoAuth, send_with_auth
from streams.cache import InMemoryCache, ResponseCache
from streams.circuit import State
from streams.flow import Step
from streams.guards import Guards
from streams.http_types import HttpResult, OutgoingRequest
from streams.metrics import Metrics
from streams.netguard import AddressRefused
from streams.partner_errors import describe
from streams.ratelimit import take_write_gate
from streams.responses.xml_format import parse_xml
from streams.retry_policy import Action, Decision, decide, parse_retry_after
from streams.transport import Transport

if TYPE_CHECKING:
    from streams.batching import Batcher

SendHook = Callable[[OutgoingRequest], None]
http_log = logging.getLogger("leadstreams.http")
body_log = logging.getLogger("leadstreams.http.bodies")


@dataclass
class StepServices:
    """What a step needs beyond its own definition; one per worker (or test)."""

    client: Transport
    guards: Guards
    flow: str
    metrics: Metrics | None = None
    cache: ResponseCache = field(default_factory=InMemoryCache)
    can_defer: bool = False  # the flow has delayed retry topics
    rng: random.Random = field(default_factory=random.Random)
    batcher: Batcher | None = None  # windows of the flow's `batch:` steps
    activity: FlowActivity | None = None  # the worker's per-minute log of partners and leads


@dataclass
class Call:
    """The partner's last answer (None when there was none) and what the policy made of it."""

    response: HttpResult | None
    decision: Decision
    attempts: int
    reason: str

    @property
    def answered(self) -> bool:
        """An answer the outcome rules should judge (as opposed to "go elsewhere")."""
        return self.response is not None and self.decision.action in (Action.DONE, Action.FAIL)


async def call_partner(
    step: Step,
    request: OutgoingRequest,
    timeout: float,
    services: StepServices,
    on_send: SendHook | None = None,
    use_circuit: bool = True,
) -> Call:
    """Raises AddressRefused (a refused network is a configuration error, not a reason to
    retry) and AuthError; everything else is judged by the status policy.

    ``use_circuit=False`` for a fallback ``url``: another source is not behind the partner's
    circuit, and its answers must not open or close it."""
    integration = step.integration
    guard = services.guards.for_integration(integration)
    circuit = guard.circuit if use_circuit else None
    metrics, flow = services.metrics, services.flow
    # A fallback ``url`` is another source: its failures are not the partner's.
    activity = services.activity if use_circuit else None
    attempts = 0

    admitted = False  # by the circuit, for this attempt

    async def send(outgoing: OutgoingRequest) -> HttpResult:
        nonlocal admitted
        if on_send is not None:
            on_send(outgoing)
        # The limiter is asked only once a concurrency slot is free, so the slot's
        # wait cannot bunch sends that the limiter had spaced out.
        await guard.slots.acquire()  # (not ``async with``: one coroutine fewer per request)
        try:
            # A circuit that opened while this lead waited for its slot refuses it now, before the
            # limiter: otherwise each queued lead would first wait for a rate-limit slot, and use
            # it up, only to be refused (600 leads at 2/s: the last after 5 minutes). Reading the
            # state takes no half-open probe; that is ``allow()``'s, at the moment of sending.
            asked = circuit if not admitted and outgoing.coalesce_key is None else None
            if asked is not None and asked.state is State.OPEN:
                raise CircuitRefused
            if guard.limiter.rate is not None:  # no limiter, no wait to ask for or to observe
                waited = await guard.limiter.acquire()
                if metrics is not None:
                    metrics.limiter_wait.labels(flow, integration.name).observe(waited)
            # The circuit is asked (again) now, not when the lead arrived: the wait for a slot and
            # the limiter can be long, and a backlog admitted before the circuit opened would all be
            # sent into the failing partner. Once per attempt (an auth flow's resend after a
            # refreshed token is the same call), and not for a shared token fetch, whose failure
            # would become every waiting lead's. A refused call leaves its limiter slot unused
            # (as a cancelled wait does: it only errs on the slow side) and disarms its write
            # gate, which would otherwise pace this task's next request, maybe to another partner.
            if asked is not None:
                if not asked.allow():
                    take_write_gate()
                    raise CircuitRefused
                admitted = True
            guard.in_flight += 1
            try:
                answer = await services.client.send(integration, outgoing, timeout)
            except (TimeoutError, aiohttp.ClientError) as exc:
                if http_log.isEnabledFor(logging.DEBUG):
                    log_exchange(step, flow, outgoing, None, attempt, describe(exc, timeout))
                raise
            finally:
                guard.in_flight -= 1
        finally:
            guard.slots.release()
        if metrics is not None:
            metrics.http_responses.labels(flow, integration.name, f"{answer.status // 100}xx").inc()
        log_exchange(step, flow, outgoing, answer, attempt)
        return answer

    attempt = 0
    while True:
        attempt += 1
        admitted = False
        # An open circuit refuses at once, without waiting for a slot (reading the state
        # does not take a half-open probe: that is for the moment of sending).
        if circuit is not None and circuit.state is State.OPEN:
            return circuit_open(attempts)
        response: HttpResult | None = None
        reason = ""
        try:
            if isinstance(integration.auth, NoAuth):  # no flow to drive: one request, one answer
                response, sent = await send(request), 1
            else:
                response, sent = await send_with_auth(integration.auth, request, send)
            attempts += sent
            if definitive(step, response):
                decision = Decision(Action.DONE, reason=f"HTTP {response.status}")
            else:
                decision = decide(
                    step.retry_config, attempt, status=response.status,
                    retry_after=parse_retry_after(response.headers.get("retry-after"), time.time()),
                    rng=services.rng,
                )  # fmt: skip
        except AddressRefused:
            raise
        except CircuitRefused:  # (before the send: not an attempt, nothing for the circuit)
            return circuit_open(attempts)
        except TimeoutError as exc:
            attempts += 1
            reason = describe(exc, timeout)  # "timeout after 5s"
            if metrics is not None:
                metrics.timeouts.labels(flow, integration.name).inc()
            decision = decide(step.retry_config, attempt, error="timeout", rng=services.rng)
        except aiohttp.ClientError as exc:
            attempts += 1
            reason = describe(exc)  # "connection refused by 127.0.0.1:1", "TLS handshake failed: ..."
            decision = decide(step.retry_config, attempt, error="connection", rng=services.rng)
        if activity is not None:
            if response is None:
                activity.failed(integration.name, reason)
            elif response.status >= 500 and decision.action is not Action.DONE:  # (not a judged answer)
                activity.failed(integration.name, f"HTTP {response.status}", answered=True)
            else:
                activity.answered(integration.name)
        if circuit is not None:
            circuit.record(
                response is not None and response.status < 500,
                reason or (f"HTTP {response.status}" if response is not None else ""),
            )
        if decision.auth_failure and metrics is not None:
            metrics.auth_failures.labels(flow, integration.name).inc()
        if decision.action is Action.RETRY:
            if metrics is not None:
                metrics.retries.labels(flow, integration.name, reason_label(response, reason)).inc()
            await asyncio.sleep(decision.delay)  # the policy's backoff, with jitter
            continue
        return Call(response, decision, attempts, reason or decision.reason)


class CircuitRefused(Exception):
    """The circuit refused a call at the moment of sending (raised inside ``call_partner``)."""


def circuit_open(attempts: int) -> Call:
    """No answer: the circuit is open; the step goes to its fallback chain."""
    return Call(None, Decision(Action.FALLBACK, reason="circuit open"), attempts, "circuit open")


def log_exchange(
    step: Step, flow: str, request: OutgoingRequest, answer: HttpResult | None, attempt: int, error: str = ""
) -> None:
    """One DEBUG record per partner request, answered or failed (no headers: they hold
    credentials); bodies only on the ``leadstreams.http.bodies`` logger. The worker masks
    settings in every record."""
    if not http_log.isEnabledFor(logging.DEBUG):
        return
    fields: dict[str, object] = {
        "flow": flow,
        "step": step.name,
        "integration": step.integration.name,
        "method": request.method,
        "url": str(request.url),
        "attempt": attempt,
    }
    if answer is None:
        http_log.debug(
            "%s %s failed (attempt %d): %s", request.method, request.url, attempt, error, extra=fields
        )
        return
    fields.update(status=answer.status, elapsed_ms=round(answer.elapsed * 1000, 1))
    http_log.debug("%s %s -> %s in %.1f ms (attempt %d)", request.method, request.url, answer.status,
                   fields["elapsed_ms"], attempt, extra=fields)  # fmt: skip
    if body_log.isEnabledFor(logging.DEBUG):
        sent = (request.body or b"").decode("utf-8", errors="replace")
        got = answer.body.decode("utf-8", errors="replace")
        body_log.debug("request body: %s | response body: %s", sent[:4000], got[:4000], extra=fields)


def definitive(step: Step, response: HttpResult) -> bool:
    """An error status that is an answer, not a passing failure: one an outcome rule is
    written for, or a SOAP Fault (SOAP 1.1 sends faults with HTTP 500)."""
    if response.status in step.judged_statuses:
        return True
    if (
        response.status >= 500
        and response.content_type.endswith("xml")
        and step.response_format in ("auto", "xml")
    ):
        try:
            return parse_xml(response.body).fault is not None
        except ValueError:
            return False
    return False


def reason_label(response: HttpResult | None, reason: str) -> str:
    """A bounded label: the status, or the kind of transport failure ("timeout", or
    "connection" for every other failure without an answer: refused, DNS, TLS, reset...)."""
    if response is not None:
        return str(response.status)
    return "timeout" if reason.startswith("timeout") else "connection"
