"""Call a partner under the integration's protections — circuit breaker, concurrency slots,
rate limiter, auth flow — and the status policy's inline retries."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from streams.address_policy import AddressRefused
from streams.auth import NoAuth, send_with_auth
from streams.circuit import State
from streams.flow import Step
from streams.http_types import HttpResult, OutgoingRequest
from streams.partner_errors import describe
from streams.ratelimit import take_write_gate
from streams.responses.xml_format import parse_xml
from streams.retry_policy import Action, Decision, decide, parse_retry_after
from streams.step.services import StepServices

SendHook = Callable[[OutgoingRequest], None]
http_log = logging.getLogger("leadstreams.http")
body_log = logging.getLogger("leadstreams.http.bodies")


@dataclass(slots=True)
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
    circuit, and its answers must neither open nor close it."""
    return await PartnerCall(step, services, timeout, on_send, use_circuit).run(request)


class CircuitRefused(Exception):
    """The circuit refused a call at the moment of sending (raised inside ``PartnerCall``)."""


class PartnerCall:
    """One call's attempts, until the retry policy is done with them."""

    def __init__(
        self, step: Step, services: StepServices, timeout: float, on_send: SendHook | None, use_circuit: bool
    ) -> None:
        self.step, self.services, self.timeout, self.on_send = step, services, timeout, on_send
        self.integration = step.integration
        self.protection = services.protections.for_integration(self.integration)
        self.circuit = self.protection.circuit if use_circuit else None
        # A fallback ``url`` is another source: its failures are not the partner's.
        self.activity = services.activity if use_circuit else None
        self.attempt = 0
        self.admitted = False  # by the circuit, for this attempt

    async def run(self, request: OutgoingRequest) -> Call:
        attempts = 0
        while True:
            self.attempt += 1
            self.admitted = False
            # An open circuit refuses at once, without waiting for a slot (reading the state
            # does not take a half-open probe: that is for the moment of sending).
            if self.circuit is not None and self.circuit.state is State.OPEN:
                return circuit_open(attempts)
            response: HttpResult | None = None
            reason = ""
            try:
                response, sent = await self.exchange(request)
                attempts += sent
                decision = self.judge_status(response)
            except AddressRefused:
                raise
            except CircuitRefused:  # (before the send: not an attempt, nothing for the circuit)
                return circuit_open(attempts)
            except (TimeoutError, aiohttp.ClientError) as exc:
                attempts += 1
                reason, decision = self.judge_failure(exc)
            self.observe(response, decision, reason)
            if decision.action is not Action.RETRY:
                return Call(response, decision, attempts, reason or decision.reason)
            if self.services.metrics is not None:
                self.services.metrics.retries.labels(
                    self.services.flow, self.integration.name, reason_label(response, reason)
                ).inc()
            await asyncio.sleep(decision.delay)  # the policy's backoff, with jitter

    async def exchange(self, request: OutgoingRequest) -> tuple[HttpResult, int]:
        """The answer and how many requests it took (an auth flow may send more than one)."""
        if isinstance(self.integration.auth, NoAuth):  # no flow to drive: one request, one answer
            return await self.send(request), 1
        return await send_with_auth(self.integration.auth, request, self.send)

    async def send(self, outgoing: OutgoingRequest) -> HttpResult:
        """One request under the concurrency slots, the circuit and the rate limiter."""
        if not outgoing.step:  # an auth flow's own request (a token fetch) is the step's too
            outgoing = dataclasses.replace(outgoing, step=self.step.name)
        if self.on_send is not None:
            self.on_send(outgoing)
        metrics, flow = self.services.metrics, self.services.flow
        # The limiter is asked only once a concurrency slot is free, so the slot's
        # wait cannot bunch sends that the limiter had spaced out.
        async with self.protection.slots:
            await self.admit(outgoing)
            self.protection.in_flight += 1
            try:
                answer = await self.services.client.send(self.integration, outgoing, self.timeout)
            except (TimeoutError, aiohttp.ClientError) as exc:
                if http_log.isEnabledFor(logging.DEBUG):
                    log_exchange(self.step, flow, outgoing, None, self.attempt, describe(exc, self.timeout))
                raise
            finally:
                self.protection.in_flight -= 1
        if metrics is not None:
            metrics.http_responses.labels(flow, self.integration.name, f"{answer.status // 100}xx").inc()
        log_exchange(self.step, flow, outgoing, answer, self.attempt)
        return answer

    async def admit(self, outgoing: OutgoingRequest) -> None:
        """Raises CircuitRefused. A circuit that opened while this lead waited for its slot
        refuses it before the limiter: otherwise each queued lead would first wait for a
        rate-limit slot, and use it up, only to be refused (600 leads at 2/s: the last after
        5 minutes). Reading the state takes no half-open probe; ``allow()`` does, at the moment
        of sending, after the limiter — the slot's and the limiter's waits can be long, and a
        backlog admitted before the circuit opened would all go into the failing partner. Once
        per attempt (an auth flow's resend after a refreshed token is the same call), and not
        for a shared token fetch, whose failure would become every waiting lead's."""
        asked = self.circuit if not self.admitted and outgoing.coalesce_key is None else None
        if asked is not None and asked.state is State.OPEN:
            raise CircuitRefused
        limiter = self.protection.limiter
        if limiter.rate is not None:  # no limiter, no wait to ask for or to observe
            waited = await limiter.acquire()
            if self.services.metrics is not None:
                self.services.metrics.limiter_wait.labels(self.services.flow, self.integration.name).observe(
                    waited
                )
        if asked is not None:
            if not asked.allow():
                # The limiter slot stays unused (as a cancelled wait's: it only errs on the slow
                # side); the write gate is disarmed, or it would pace this task's next request.
                take_write_gate()
                raise CircuitRefused
            self.admitted = True

    def judge_status(self, response: HttpResult) -> Decision:
        if definitive(self.step, response):
            return Decision(Action.DONE, reason=f"HTTP {response.status}")
        return decide(
            self.step.retry_config, self.attempt, status=response.status,
            retry_after=parse_retry_after(response.headers.get("retry-after"), time.time()),
            rng=self.services.rng,
        )  # fmt: skip

    def judge_failure(self, exc: TimeoutError | aiohttp.ClientError) -> tuple[str, Decision]:
        """No answer: a timeout ("timeout after 5s") or a connection failure ("connection
        refused by 127.0.0.1:1", "TLS handshake failed: ...")."""
        if isinstance(exc, TimeoutError):
            if self.services.metrics is not None:
                self.services.metrics.timeouts.labels(self.services.flow, self.integration.name).inc()
            error = "timeout"
        else:
            error = "connection"
        decision = decide(self.step.retry_config, self.attempt, error=error, rng=self.services.rng)
        return describe(exc, self.timeout), decision

    def observe(self, response: HttpResult | None, decision: Decision, reason: str) -> None:
        """The attempt for the activity log, the circuit and the auth-failure count."""
        name = self.integration.name
        if self.activity is not None:
            if response is None:
                self.activity.failed(name, reason)
            elif response.status >= 500 and decision.action is not Action.DONE:  # (not a judged answer)
                self.activity.failed(name, f"HTTP {response.status}", answered=True)
            else:
                self.activity.answered(name)
        if self.circuit is not None:
            self.circuit.record(
                response is not None and response.status < 500,
                reason or (f"HTTP {response.status}" if response is not None else ""),
            )
        if decision.auth_failure and self.services.metrics is not None:
            self.services.metrics.auth_failures.labels(self.services.flow, name).inc()


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
