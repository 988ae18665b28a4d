"""One input message in, one output message out: the Kafka-free heart of the worker."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from enum import StrEnum

import orjson

from streams.events import (
    BadInput,
    Source,
    bad_input_event,
    decode_lead,
    lead_id_for,
    processed_event,
    timestamp,
)
from streams.masking import Masker
from streams.metrics import Metrics
from streams.outcomes import Outcome
from streams.runner import FlowRunner

log = logging.getLogger(__name__)


class Destination(StrEnum):
    ENRICHED = "enriched"
    ERRORS = "errors"


@dataclass(frozen=True)
class Output:
    destination: Destination
    key: bytes
    value: bytes
    outcome: str


class LeadPipeline:
    def __init__(self, runner: FlowRunner, metrics: Metrics | None = None) -> None:
        self.runner = runner
        self.flow = runner.flow
        self.metrics = metrics
        self.masker = Masker(self.flow.secrets)

    async def process(self, raw: bytes | None, source: Source) -> Output:
        """Never raises: anything unexpected becomes an errors-topic event for this lead."""
        received_at = timestamp()
        started = time.perf_counter()
        lead_id = lead_id_for(None, source)
        try:
            try:
                lead = decode_lead(raw)
            except BadInput as exc:
                if self.metrics is not None:
                    self.metrics.bad_inputs.labels(self.flow.name).inc()
                return self._output(
                    Destination.ERRORS,
                    lead_id,
                    bad_input_event(self.flow.name, raw, source, str(exc), received_at),
                )
            lead_id = lead_id_for(lead, source)
            result = await self.runner.run(lead, lead_id)
            event = processed_event(self.flow.name, lead_id, result, source, received_at)
            destination = Destination.ERRORS if result.outcome is Outcome.ERROR else Destination.ENRICHED
            if self.metrics is not None:
                self.metrics.lead_duration.labels(self.flow.name, result.outcome.value).observe(
                    time.perf_counter() - started
                )
            return self._output(destination, lead_id, event)
        except Exception as exc:  # a bug must not lose the lead: route it to errors
            log.exception("internal error processing %s", source)
            reason = f"internal error: {type(exc).__name__}: {exc}"
            return self._output(
                Destination.ERRORS, lead_id, bad_input_event(self.flow.name, raw, source, reason, received_at)
            )

    def _output(self, destination: Destination, lead_id: str, event: dict[str, object]) -> Output:
        value = self.masker.json_bytes(orjson.dumps(event, default=str))
        return Output(destination, self.masker.text(lead_id).encode(), value, str(event["outcome"]))
