"""One input message in, one output message out: the Kafka-free heart of the worker."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from enum import StrEnum

import orjson

from streams.delayed import RetryState, next_deferral
from streams.events import (
    MAX_LEAD_BYTES,
    MAX_OUTPUT_BYTES,
    BadInput,
    Source,
    bad_input_event,
    decode_lead,
    lead_id_for,
    oversized_event,
    processed_event,
    raw_prefix,
    timestamp,
)
from streams.masking import Masker
from streams.metrics import Metrics
from streams.notifications import notification_record
from streams.outcomes import FlowResult, Outcome
from streams.recent_problems import RecentProblems
from streams.runner import FlowRunner
from streams.step.notify import QUEUED

log = logging.getLogger(__name__)


class Destination(StrEnum):
    ENRICHED = "enriched"
    ERRORS = "errors"
    RETRY = "retry"  # a delayed retry topic, named in ``Output.topic``
    NOTIFY = "notify"  # a notification topic (queue, results, retry tier), named in ``Output.topic``


@dataclass(frozen=True)
class Output:
    destination: Destination
    key: bytes
    value: bytes
    outcome: str
    topic: str | None = None  # for RETRY and NOTIFY
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    alongside: tuple[Output, ...] = ()  # written in the same write, before the input is acked


class LeadPipeline:
    def __init__(
        self,
        runner: FlowRunner,
        metrics: Metrics | None = None,
        max_lead_bytes: int = MAX_LEAD_BYTES,
        max_output_bytes: int = MAX_OUTPUT_BYTES,
        problems: RecentProblems | None = None,
    ) -> None:
        self.runner = runner
        self.problems = problems  # the web console's "Recent problems"
        self.max_lead_bytes = max_lead_bytes
        self.max_output_bytes = max_output_bytes
        self.flow = runner.flow
        self.metrics = metrics
        self.masker = Masker(self.flow.secrets)
        self.activity = runner.activity

    async def process(self, raw: bytes | None, source: Source, retry: RetryState | None = None) -> Output:
        """Never raises: anything unexpected becomes an errors-topic event for this lead.

        ``retry`` is set when the message comes from a delayed retry topic: the lead
        keeps the id and ``input`` of where it first arrived."""
        received_at = timestamp()
        started = time.perf_counter()
        group = f"{source.topic}:{source.partition}"  # batch windows never mix partitions
        source = retry.origin if retry is not None else source
        lead_id = ""  # derived from the source only when needed (uuid5 costs)
        try:
            try:
                lead = decode_lead(raw, self.max_lead_bytes)
            except BadInput as exc:
                if self.metrics is not None:
                    self.metrics.bad_inputs.labels(self.flow.name).inc()
                output = self._unusable(raw, source, lead_id_for(None, source), str(exc), received_at)
                return self._done(output, started)
            lead_id = lead_id_for(lead, source)
            result = await self.runner.run(lead, lead_id, copy_lead=False, group=group)
            deferred = self._deferred(result, raw, lead_id, source, retry)
            if deferred is not None:
                return self._done(deferred, started)
            event = processed_event(self.flow.name, lead_id, result, source, received_at, self.flow.version)
            if self.metrics is not None:
                took = time.perf_counter() - started
                self.metrics.lead_duration.labels(self.flow.name, result.outcome.value).observe(took)
            destination = Destination.ERRORS if result.outcome is Outcome.ERROR else Destination.ENRICHED
            output = self._output(destination, lead_id, event, raw)
            if result.notifications:  # on Kafka with the lead's event, before its offset commits
                output = replace(output, alongside=self._queued(result, lead_id, source))
            return self._done(output, started)
        except Exception as exc:  # a bug must not lose the lead: route it to errors
            log.exception("internal error processing %s", source)
            output = self._internal_error(raw, source, lead_id or lead_id_for(None, source), exc, received_at)
            return self._done(output, started)

    def _deferred(
        self, result: FlowResult, raw: bytes | None, lead_id: str, source: Source, retry: RetryState | None
    ) -> Output | None:
        """The lead itself for a delayed retry topic, when the flow deferred it and may; when
        it may no more, the lead's reason says it gave up."""
        if result.defer_after is None:
            return None
        deferred = self._defer(raw, lead_id, source, retry, result.defer_after, result.reason or "")
        if deferred is None:
            result.reason = f"gave up after {retry.attempt if retry else 0} delayed retries: {result.reason}"
        return deferred

    def _unusable(
        self, raw: bytes | None, source: Source, lead_id: str, reason: str, received_at: str
    ) -> Output:
        """An errors event carrying the raw input: it was no lead, or processing it failed."""
        event = bad_input_event(self.flow.name, self.masker.raw_bytes(raw), source, reason, received_at,
                                self.flow.version)  # fmt: skip
        return self._output(Destination.ERRORS, lead_id, event, raw)

    def _internal_error(
        self, raw: bytes | None, source: Source, lead_id: str, exc: Exception, received_at: str
    ) -> Output:
        try:
            reason = f"internal error: {type(exc).__name__}: {exc}"
            return self._unusable(raw, source, lead_id, reason, received_at)
        except Exception:  # even the error event failed: the smallest event that can't
            minimal = {
                "id": lead_id, "flow": self.flow.name, "flow_version": self.flow.version,
                "outcome": "error", "reason": "internal error",
                "error": "internal error", "lead": None, "steps": [], "input": source.as_event(),
                "raw": raw_prefix(self.masker.raw_bytes(raw), self.max_output_bytes),
                "received_at": received_at,
                "completed_at": received_at,
            }  # fmt: skip
            return Output(Destination.ERRORS, lead_id.encode(), orjson.dumps(minimal), "error")

    def _done(self, output: Output, started: float) -> Output:
        """The lead's outcome for the activity log (per-minute counts at info level) and,
        an error or failure, its event for the web console's recent problems."""
        if self.activity is not None:
            self.activity.lead(output.outcome, time.perf_counter() - started)
        if self.problems is not None:
            self.problems.add(output.outcome, output.value)
        return output

    def _defer(
        self,
        raw: bytes | None,
        lead_id: str,
        source: Source,
        retry: RetryState | None,
        at_least: float,
        why: str,
    ) -> Output | None:
        policy = self.flow.delayed_retry
        prefix = self.flow.topics.retry if self.flow.topics is not None else None
        if policy is None or prefix is None or len(raw or b"") > self.max_output_bytes:
            return None  # (a lead Kafka would refuse on the retry topic is not deferred)
        deferral = next_deferral(policy, prefix, retry, source, at_least, self.masker.text(why))
        if deferral is None:
            return None
        topic, state = deferral
        if self.metrics is not None:
            self.metrics.deferred.labels(self.flow.name).inc()
        key = self.masker.text(lead_id).encode()
        return Output(Destination.RETRY, key, raw or b"", "deferred", topic=topic, headers=state.headers())

    def _queued(self, result: FlowResult, lead_id: str, source: Source) -> tuple[Output, ...]:
        """The notifications of the lead's ``notify:`` steps, as records for their queue."""
        queue = self.flow.topics.notifications if self.flow.topics is not None else None
        assert queue is not None, "the loader requires topics.notifications with notify steps"
        key = self.masker.text(lead_id).encode()
        outputs = []
        for notification in result.notifications:
            url = self.masker.text(notification.url)
            version = self.flow.version
            record = notification_record(self.flow.name, lead_id, notification, source, url, version)
            outputs.append(Output(Destination.NOTIFY, key, record, QUEUED, topic=queue))
            if self.metrics is not None:
                self.metrics.notifications.labels(self.flow.name, notification.step, QUEUED).inc()
        return tuple(outputs)

    def _output(
        self, destination: Destination, lead_id: str, event: dict[str, object], raw: bytes | None
    ) -> Output:
        value = self._encoded(event)
        if len(value) > self.max_output_bytes:
            log.warning("output of %d bytes for %s goes to errors as too large", len(value), event["input"])
            event = oversized_event(event, self.masker.raw_bytes(raw), len(value), self.max_output_bytes)
            value = self._encoded(event)
            if len(value) > self.max_output_bytes:  # the steps alone are too large: drop them
                event["steps"] = []
                value = self._encoded(event)
            destination = Destination.ERRORS
        return Output(destination, self.masker.text(lead_id).encode(), value, str(event["outcome"]))

    def _encoded(self, event: dict[str, object]) -> bytes:
        return self.masker.json_bytes(orjson.dumps(event, default=str))
