"""Batch steps: leads wait in tumbling windows, each window is one partner request, and the
answer is split back into one result per lead.

Windows are kept per step and per *group* (the worker passes the lead's input partition),
so a batch never mixes partitions: the partition's owner owns its windows, and a lead's
offset is committed only after its output is written, which happens after its window was
answered. A crash therefore loses no lead: the uncommitted leads are read again and rebuilt
into windows. A window opens with its first lead and closes ``window`` seconds later or when
it holds ``max_leads``; the next lead opens the next window.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streams.flow import BatchSpec, Step
from streams.http_types import OutgoingRequest
from streams.outcomes import Outcome, StepResult
from streams.responses import ResponseParseError, parse_response, read_response
from streams.step.answer import Answer, obtain, remember
from streams.step.errors import STEP_ERRORS, failure_of
from streams.step.exchange import Exchange
from streams.step.judge import Verdict, condition_skips, judge_response, judge_substitute, priced, step_result
from streams.step.request import build_request
from streams.step.services import StepServices


@dataclass(frozen=True)
class WindowAnswer:
    """What a window got back; every member lead takes its share (``lead_share``)."""

    batch_id: str
    size: int
    request: OutgoingRequest | None = None  # the last one sent (signed)
    answer: Answer | None = None  # None when no request could be made
    parsed: Any = None  # the answer's whole body, parsed
    results: dict[str, Any] | None = None  # per-lead results of a 2xx answer, by lead id
    failure: tuple[Outcome, str] | None = None  # no request could be made or understood


@dataclass
class Member:
    lead_id: str
    lead: dict[str, Any]
    reply: asyncio.Future[WindowAnswer]


@dataclass
class Window:
    step: Step
    opened: float
    members: list[Member] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


async def run_batched(
    step: Step, context: dict[str, Any], batcher: Batcher, lead_id: str, group: str = ""
) -> tuple[StepResult, Exchange]:
    """The lead joins its group's open window and takes its share of the window's answer.
    Never raises for partner or template problems (as ``run_single``)."""
    exchange = Exchange()
    started = time.perf_counter()
    reply: WindowAnswer | None = None
    try:
        verdict = condition_skips(step, context)
        if verdict is None:
            reply = await batcher.submit(step, context, lead_id, group)
            exchange.request = reply.request
            context["batch"] = {"id": reply.batch_id, "size": reply.size}
            verdict = lead_share(step, context, reply, lead_id, exchange)
    except STEP_ERRORS as exc:
        verdict = Verdict(*failure_of(exc))
    answer = reply.answer if reply is not None else None
    if answer is None:
        return step_result(step, verdict, started), exchange
    if reply is not None and reply.failure is not None:  # the window's request failed: no answer to show
        return step_result(step, verdict, started, answer.attempts), exchange
    # A lead's line shows the status of the answer its window judged, not a failed partner's.
    return step_result(step, verdict, started, answer.attempts, answer.response, answer.source), exchange


def lead_share(
    step: Step, context: dict[str, Any], reply: WindowAnswer, lead_id: str, exchange: Exchange
) -> Verdict:
    """One lead's share of its window's answer: its own result from a 2xx response
    (``response`` is that result; ``batch`` holds the id and size), the whole answer
    otherwise, or what the fallback chain produced for the window."""
    answer = reply.answer
    if reply.failure is not None or answer is None:
        return Verdict(*(reply.failure or (Outcome.ERROR, "no answer")))
    if answer.kind != "response" or answer.response is None:
        # Each lead gets its own copy: default values are shared by the whole window.
        own = dataclasses.replace(answer, fields=copy.deepcopy(answer.fields))
        verdict = judge_substitute(step, context, own)
    else:
        exchange.response = answer.response
        parsed = reply.parsed
        if isinstance(parsed, dict | list):  # the whole answer is shared by the window: a copy each
            parsed = copy.deepcopy(parsed)
        if reply.results is not None:
            if lead_id not in reply.results:
                return Verdict(Outcome.ERROR, "no result in batch response")
            parsed = reply.results[lead_id]
        exchange.parsed = parsed
        # (a non-2xx answer may be in another format than the step's: its rules may not fit it)
        response = answer.response
        foreign = not response.ok and not read_response(step.response_format, response)[1]
        verdict = judge_response(step, context, response, parsed, foreign)
        exchange.mapped = verdict.mapped
        return priced(step, context, verdict)
    exchange.mapped = verdict.mapped
    return verdict


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

    async def submit(
        self, step: Step, context: dict[str, Any], lead_id: str, group: str = ""
    ) -> WindowAnswer:
        spec = step.batch
        assert spec is not None
        loop = asyncio.get_running_loop()
        key = (step.name, group)
        window = self._open.get(key)
        if window is None:
            window = self._open[key] = Window(step, time.monotonic())
            self._count_open(step, +1)
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
        self._count_open(window.step, -1)
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

    def _count_open(self, step: Step, change: int) -> None:
        if self.services.metrics is not None:
            self.services.metrics.batch_windows_open.labels(self.services.flow, step.name).inc(change)

    async def _answer(self, window: Window) -> None:
        step, members = window.step, window.members
        batch_id = batch_id_for(self.services.flow, step.name, [member.lead_id for member in members])
        started = time.perf_counter()
        try:
            reply = await self._send(step, members, batch_id)
        except asyncio.CancelledError:
            for member in members:  # no lead may wait forever; unanswered, they are read again
                member.reply.cancel()
            raise
        except Exception as exc:  # a bug must still answer every lead of the window
            reply = WindowAnswer(batch_id, len(members), failure=(Outcome.ERROR, f"internal error: {exc!r}"))
        if self.services.metrics is not None:
            self.services.metrics.batch_request_duration.labels(
                self.services.flow, step.name, step.integration.name, window_result(reply)
            ).observe(time.perf_counter() - started)
        for member in members:
            if not member.reply.done():
                member.reply.set_result(reply)

    async def _send(self, step: Step, members: list[Member], batch_id: str) -> WindowAnswer:
        context = self.window_context(members, batch_id)
        last_sent: list[OutgoingRequest] = []
        answer: Answer | None = None
        try:
            request, timeout = build_request(step, context, batch_id)
            last_sent.append(request)
            answer = await obtain(step, request, timeout, context, self.services, batch_id, last_sent.append)
            response = answer.response
            if answer.kind != "response" or response is None:
                return WindowAnswer(batch_id, len(members), last_sent[-1], answer)
            parsed = parse_response(step.response_format, response)
            results = None
            if response.ok:
                assert step.batch is not None
                results = split_results(parsed, step.batch)
                await remember(self.services, step, answer)
            return WindowAnswer(batch_id, len(members), last_sent[-1], answer, parsed, results)
        except STEP_ERRORS as exc:
            sent = last_sent[-1] if last_sent else None
            return WindowAnswer(batch_id, len(members), sent, answer, failure=failure_of(exc))

    def window_context(self, members: list[Member], batch_id: str) -> dict[str, Any]:
        return {
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


def window_result(reply: WindowAnswer) -> str:
    """The ``outcome`` label of ``batch_request_duration``: answered, substituted or failed."""
    answer = reply.answer
    if answer is not None and answer.kind not in ("none", "broken") and answer.source != "primary":
        return "substituted"
    if reply.failure is not None or answer is None or answer.response is None:
        return "failed"
    return "answered"


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
