"""Write outputs to Kafka and wait for the broker's acknowledgement of each one."""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

from streams.metrics import Metrics
from streams.pipeline import Destination, Output

log = logging.getLogger(__name__)
EXIT_OUTPUT_FAILED = 70


class OutputWriter:
    """Sends a batch of outputs and returns only when Kafka acknowledged all of them.

    If the broker keeps refusing, the process exits *without* acking the input
    events (Faust would ack them if we raised), so they are re-read on restart.
    """

    def __init__(
        self,
        producer: Any,
        topics: dict[Destination, str],
        flow: str,
        metrics: Metrics | None,
        attempts: int = 5,
    ) -> None:
        self.producer = producer
        self.topics = topics
        self.flow = flow
        self.metrics = metrics
        self.attempts = attempts

    async def write_all(self, outputs: Sequence[Output]) -> None:
        pending = list(outputs)
        for attempt in range(1, self.attempts + 1):
            results = await self._send_all(pending)
            failed = [o for o, r in zip(pending, results, strict=True) if isinstance(r, BaseException)]
            if self.metrics is not None:  # one increment per topic and write, not per lead
                acked = zip(pending, results, strict=True)
                written = Counter(self.topic_of(o) for o, r in acked if not isinstance(r, BaseException))
                for topic, count in written.items():
                    self.metrics.leads_written.labels(self.flow, topic).inc(count)
            if not failed:
                return
            errors = {repr(r) for r in results if isinstance(r, BaseException)}
            log.warning("%d outputs not acknowledged (attempt %d): %s", len(failed), attempt, errors)
            pending = failed
            await asyncio.sleep(min(2**attempt, 30))
        log.critical(
            "Kafka did not acknowledge %d outputs; exiting without committing their input", len(pending)
        )
        os._exit(EXIT_OUTPUT_FAILED)

    def topic_of(self, output: Output) -> str:
        return output.topic or self.topics[output.destination]

    async def _send_all(self, outputs: Sequence[Output]) -> list[Any]:
        """Queue every output with the producer, then wait for the acknowledgements: no task
        per output (``send`` only queues; its future resolves when Kafka acknowledges)."""
        queued: list[Any] = []
        for output in outputs:
            try:
                queued.append(
                    await self.producer.send(
                        self.topic_of(output), output.key, output.value, None, None, output.headers or None
                    )
                )
            except Exception as exc:  # retried like an unacknowledged send
                queued.append(exc)
        futures = [item for item in queued if not isinstance(item, BaseException)]
        acknowledged = iter(await asyncio.gather(*futures, return_exceptions=True))
        return [item if isinstance(item, BaseException) else next(acknowledged) for item in queued]
