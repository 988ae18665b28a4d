"""Batch steps: leads wait in tumbling windows, each window is one partner request, and the
answer is split back into one result per lead.

Windows are kept per step and per *group* (the worker sets the group to the lead's input
partition), so a batch never mixes partitions: the partition's owner owns its windows, and
a lead's offset is committed only after its output is written, which happens after its
window was answered. A crash therefore loses no lead: the uncommitted leads are read again
and rebuilt into windows. A window opens with its first lead and closes ``window`` seconds
later or when it holds ``max_leads``; the next lead opens the next window.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streams.cache import CachedResponse, request_fingerprint
from streams.calling import Call, StepServices, call_partner
from streams.execution import STEP_ERRORS, build_request, count_fallback, failure_of
from streams.fallbacks import Substitute, run_chain
from streams.flow import BatchSpec, Step
from streams.http_types import HttpResult, OutgoingRequest
from streams.outcomes import Outcome
from streams.responses import ResponseParseError, parse_response
from streams.transport import current_step

# Which windows a lead joins: the worker sets it to the lead's input partition.
batch_group: ContextVar[str] = ContextVar("batch_group", default="")


@dataclass
class BatchReply:
    """What a window got back; every member lead takes its share (``take_batch_reply``)."""

    batch_id: str
    size: int
    request: OutgoingRequest | None = None
    call: Call | None = None
    response: HttpResult | None = None  # the partner's answer, or a fallback source's
    source: str | None = None
    parsed: Any = None
    results: dict[str, Any] | None = None  # per-lead results of a 2xx answer, by lead id
    substitute: Substitute | None = None  # default / skip / defer / nothing from the chain
    failure: tuple[Outcome, str] | None = None  # no request could be made or understood
    attempts: int = 0


@dataclass
class Member:
    lead_id: str
    lead: dict[str, Any]
    reply: asyncio.Future[BatchReply]


@dataclass
class Window:
    step: Step
    opened: float
    members: list[Member] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class Batcher:
    """``windowed=False`` sends every lead as a batch of one at once (the test console and
    saved test cases); the worker uses real windows."""

    def __init__(self, services: StepServices, base_context: dict[str, Any], windowed: bool = True) -> None:
        self.services = services
        self.base_context = base_context
        self.windowed = windowed
        self._open: dict[tuple[str, str], Window] = {}
        self._sending: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """Leads waiting in open windows or in batches not yet answered."""
        return sum(len(w.members) for w in self._open.values()) + len(self._sending)

    async def submit(self, step: Step, context: dict[str, Any], lead_id: str) -> BatchReply:
        spec = step.batch
        assert spec is not None
        loop = asyncio.get_running_loop()
        key = (step.name, batch_group.get())
        window = self._open.get(key)
        if window is None:
            window = self._open[key] = Window(step, time.monotonic())
            if self.windowed:
                window.timer = loop.call_later(spec.window, self._close, key, window)
        member = Member(lead_id, context["lead"], loop.create_future())
        window.members.append(member)
        if not self.windowed or len(window.members) >= spec.max_leads:
            self._close(key, window)
        # Shielded: a cancelled lead must not cancel the answer its window-mates wait for.
        return await asyncio.shield(member.reply)

    def stop_windowing(self) -> None:
        """From now on each lead goes at once as a batch of one (the worker is stopping)."""
        self.windowed = False

    async def close_all(self) -> None:
        """Close every open window now and wait until all batches are answered (shutdown,
        rebalance): the consumer waits for these leads before it commits and lets go."""
        for key, window in list(self._open.items()):
            self._close(key, window)
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    def _close(self, key: tuple[str, str], window: Window) -> None:
        if self._open.get(key) is not window:
            return  # closed already (full before its timer fired)
        del self._open[key]
        if window.timer is not None:
            window.timer.cancel()
        task = asyncio.ensure_future(self._answer(window))  # first: nothing below may strand it
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
        metrics = self.services.metrics
        if metrics is not None:
            metrics.batch_leads.labels(self.services.flow, window.step.name).observe(len(window.members))
            fill = time.monotonic() - window.opened
            metrics.batch_fill.labels(self.services.flow, window.step.name).observe(fill)

    async def _answer(self, window: Window) -> None:
        step, members = window.step, window.members
        ids = [member.lead_id for member in members]
        batch_id = batch_id_for(self.services.flow, step.name, ids)
        started = time.perf_counter()
        current_step.set(step.name)
        try:
            reply = await self._send(step, members, batch_id)
        except asyncio.CancelledError:
            for member in members:  # no lead may wait forever; unanswered, they are read again
                member.reply.cancel()
            raise
        except Exception as exc:  # a bug must still answer every lead of the window
            reply = BatchReply(batch_id, len(members), failure=(Outcome.ERROR, f"internal error: {exc!r}"))
        if self.services.metrics is not None:
            outcome = "failed" if reply.failure else "answered"
            if reply.source not in (None, "primary") or (
                reply.substitute and reply.substitute.kind != "none"
            ):
                outcome = "substituted"
            elif reply.response is None:
                outcome = "failed"
            self.services.metrics.batch_request_duration.labels(
                self.services.flow, step.name, step.integration.name, outcome
            ).observe(time.perf_counter() - started)
        for member in members:
            if not member.reply.done():
                member.reply.set_result(reply)

    async def _send(self, step: Step, members: list[Member], batch_id: str) -> BatchReply:
        spec = step.batch
        assert spec is not None
        reply = BatchReply(batch_id, len(members))
        context = {
            **self.base_context,
            "now": datetime.now(UTC),
            "vars": {},
            "batch": {
                "id": batch_id,
                "size": len(members),
                "leads": [member.lead for member in members],
                # The ids results are matched against, in the same order: a lead without an
                # `id` field has one derived from where it was read.
                "ids": [member.lead_id for member in members],
            },
        }
        try:
            request, timeout = build_request(step, context, batch_id)
            reply.request = request
            fingerprint = request_fingerprint(step.integration.name, request.method, str(request.url),
                                              request.body)  # fmt: skip

            def record(outgoing: OutgoingRequest) -> None:
                reply.request = outgoing

            call = reply.call = await call_partner(step, request, timeout, self.services, record)
            reply.attempts = call.attempts
            response, source = (call.response, "primary") if call.answered else (None, None)
            if response is None:
                elsewhere = lambda src: build_request(step, context, batch_id, src.url)  # noqa: E731
                answer = await run_chain(step, call, fingerprint, context, self.services, elsewhere)
                reply.attempts += answer.attempts
                count_fallback(self.services, step, answer)
                if answer.kind != "response":
                    reply.substitute = answer
                    return reply
                response, source = answer.response, answer.source
            assert response is not None
            reply.response, reply.source = response, source
            reply.parsed = parse_response(step.response_format, response)
            if response.ok:
                reply.results = split_results(reply.parsed, spec)
                if step.caches and source == "primary":
                    cached = CachedResponse.from_result(response, time.time())
                    await self.services.cache.put(fingerprint, cached)
        except STEP_ERRORS as exc:
            reply.failure = failure_of(exc)
        return reply


def batch_id_for(flow: str, step: str, lead_ids: list[str]) -> str:
    """The same leads give the same id (a replay after a crash sends the same id, so the
    partner can de-duplicate); a window with other leads gets another id."""
    digest = hashlib.sha256("\0".join([flow, step, *sorted(lead_ids)]).encode())
    return digest.hexdigest()[:32]


def split_results(parsed: Any, spec: BatchSpec) -> dict[str, Any]:
    """The per-lead results of an answer, by lead id (the first result of an id wins)."""
    items = dig(parsed, spec.results)
    if not isinstance(items, list):
        where = f"`{spec.results}`" if spec.results else "the response"
        raise ResponseParseError(f"batch response: {where} is not a list of results")
    results: dict[str, Any] = {}
    for item in items:
        key = dig(item, spec.match)
        if key is not None and not isinstance(key, dict | list):
            results.setdefault(str(key), item)
    return results


def dig(value: Any, dotted: str) -> Any:
    """``a.b.0.c`` inside parsed JSON; None when the path is not there."""
    for part in dotted.split(".") if dotted else ():
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value
