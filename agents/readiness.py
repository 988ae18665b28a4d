"""``/ready``: whether this worker can do its job right now.

Ready means: it is a member of its consumer group with an assignment (possibly empty:
a worker beyond the partition count is healthy, just idle), and the broker answered it
recently (a metadata request over the producer's connection, every few seconds).
Not ready answers 503 with the reasons, so a Kubernetes readiness probe takes the pod
out of its Service while Kafka is away, and puts it back when Kafka answers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

BROKER_SILENCE = 30.0  # seconds without an answer from the broker before not ready
PROBE_EVERY = 5.0


@dataclass
class Readiness:
    clock: Callable[[], float] = time.monotonic
    assigned: bool = False  # an assignment received since the last revocation
    last_broker_answer: float | None = None
    last_broker_error: str | None = None
    started: float = field(default_factory=time.monotonic)

    def partitions_assigned(self) -> None:
        self.assigned = True

    def partitions_revoked(self) -> None:
        self.assigned = False

    def broker_answered(self) -> None:
        self.last_broker_answer = self.clock()
        self.last_broker_error = None

    def broker_failed(self, error: str) -> None:
        self.last_broker_error = error

    def reasons(self) -> list[str]:
        """Why the worker is not ready (empty: ready)."""
        reasons = []
        if not self.assigned:
            reasons.append("not a member of its consumer group yet (joining or rebalancing)")
        if self.last_broker_answer is None:
            reasons.append(
                "no answer from the broker yet"
                + (f": {self.last_broker_error}" if self.last_broker_error else "")
            )
        elif (silent := self.clock() - self.last_broker_answer) > BROKER_SILENCE:
            reasons.append(
                f"no answer from the broker for {silent:.0f}s"
                + (f": {self.last_broker_error}" if self.last_broker_error else "")
            )
        return reasons

    async def probe_forever(
        self, ask_broker: Callable[[], Awaitable[object]], every: float = PROBE_EVERY
    ) -> None:
        """Ask the broker something small every ``every`` seconds, bounded by a timeout."""
        while True:
            try:
                await asyncio.wait_for(ask_broker(), timeout=every)
            except Exception as exc:  # any failure means: not answered
                self.broker_failed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            else:
                self.broker_answered()
            await asyncio.sleep(every)
