"""``/ready``: whether this worker can do its job right now.

Ready means all of:
* it is a member of its consumer group with an assignment (possibly empty: a worker
  beyond the partition count is healthy, just idle);
* its producer has a live connection to Kafka (a metadata request over it every few
  seconds keeps it, and reconnects it after the broker was away);
* a fetch of its partitions was answered in the last 30 s (an empty answer counts: the
  consumer long-polls; aiokafka's ``last_poll_timestamp``), when it owns any. Silence
  while the lead loop is full is back-pressure, not Kafka's: the consumer fetches nothing
  then (aiokafka does not fetch a partition with records still buffered), so the 30 s
  count from the last moment the intake was held back by --max-in-flight. Kafka away
  meanwhile shows as the producer's lost connection.

Not ready answers 503 with the reasons, so a Kubernetes readiness probe takes the pod
out of its Service while Kafka is away, and puts it back when Kafka answers again. The
changes are logged: one WARNING when it stops being ready (with the reasons), one INFO
when it is ready again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

FETCH_SILENCE = 30.0  # seconds without a fetch answered before not ready
PROBE_EVERY = 5.0


def always() -> bool:
    return True


def never_fetched() -> float | None:
    return None


def never_held() -> float | None:
    return None


def describe(error: Exception) -> str:
    """``Type: text``, once (aiokafka's errors already start their text with their type)."""
    name, text = type(error).__name__, str(error)
    return text if text.startswith(name) else f"{name}: {text}" if text else name


@dataclass
class Readiness:
    clock: Callable[[], float] = time.time  # wall clock: aiokafka's fetch times are wall clock
    producer_connected: Callable[[], bool] = always
    last_fetch: Callable[[], float | None] = never_fetched  # newest fetch answer over owned partitions
    held_back: Callable[[], float | None] = never_held  # last time the lead loop's cap held fetches back
    assigned: bool = False  # an assignment received since the last revocation
    owns_partitions: bool = False
    assigned_at: float = 0.0
    last_broker_error: str | None = None
    not_ready_since: float | None = None  # for the transition lines
    ever_ready: bool = False

    def partitions_assigned(self, owned: int = 0) -> None:
        self.assigned = True
        self.owns_partitions = owned > 0
        self.assigned_at = self.clock()

    def partitions_revoked(self) -> None:
        self.assigned = False

    def broker_answered(self) -> None:
        self.last_broker_error = None

    def broker_failed(self, error: str) -> None:
        self.last_broker_error = error

    def reasons(self) -> list[str]:
        """Why the worker is not ready (empty: ready)."""
        reasons = []
        if not self.assigned:
            reasons.append("not a member of its consumer group yet (joining or rebalancing)")
        if not self.producer_connected():
            error = f" (last error: {self.last_broker_error})" if self.last_broker_error else ""
            reasons.append(f"producer not connected to Kafka{error}")
        if self.assigned and self.owns_partitions:
            since = max(self.last_fetch() or 0.0, self.assigned_at, self.held_back() or 0.0)
            if (silent := self.clock() - since) > FETCH_SILENCE:
                reasons.append(f"no fetch answered by Kafka for {silent:.0f}s")
        return reasons

    def log_changes(self) -> None:
        """One line when the answer of /ready changes (not before the first ready)."""
        reasons = self.reasons()
        now = self.clock()
        if reasons and self.ever_ready and self.not_ready_since is None:
            self.not_ready_since = now
            log.warning("not ready: %s", "; ".join(reasons))
        elif not reasons:
            if self.not_ready_since is not None:
                log.info("ready again after %.0fs", now - self.not_ready_since)
            self.not_ready_since = None
            self.ever_ready = True

    async def probe_forever(
        self, ask_broker: Callable[[], Awaitable[object]], every: float = PROBE_EVERY, tick: float = 1.0
    ) -> None:
        """Ask the broker something small every ``every`` seconds, bounded by a timeout (it
        keeps the producer's connection, and reconnects it when the broker is back); while
        the broker is away, every ``tick``, so /ready turns 200 soon after it is back. The
        changes of /ready's answer are logged within a tick."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            if loop.time() >= due:
                try:
                    await asyncio.wait_for(ask_broker(), timeout=every)
                except Exception as exc:  # any failure means: not answered
                    self.broker_failed(describe(exc))
                else:
                    self.broker_answered()
                due = loop.time() + (every if self.last_broker_error is None else tick)
            self.log_changes()
            await asyncio.sleep(min(tick, max(0.0, due - loop.time())))
