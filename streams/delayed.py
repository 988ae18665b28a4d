"""Delayed retries: which retry topic a deferred lead goes to, and the headers it carries.

One topic per delay ("tier") keeps each topic in due-time order, so the retry agent
of a tier only ever waits for the message at its head and no lead blocks another's
partition. The message value is the lead's original bytes, untouched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from streams.events import Source
from streams.flow import DelayedRetry

ATTEMPT = "leadstreams-attempt"
DUE = "leadstreams-due"
ORIGIN_TOPIC = "leadstreams-origin-topic"
ORIGIN_PARTITION = "leadstreams-origin-partition"
ORIGIN_OFFSET = "leadstreams-origin-offset"
REASON = "leadstreams-reason"


def tier_label(delay: float) -> str:
    return f"{delay:g}s"


def tier_topics(prefix: str, policy: DelayedRetry) -> dict[float, str]:
    """Delay -> topic name, one per distinct delay of the policy."""
    return {delay: f"{prefix}.{tier_label(delay)}" for delay in sorted(set(policy.delays()))}


@dataclass(frozen=True)
class RetryState:
    """Where a deferred lead first came from and how often it was deferred."""

    attempt: int  # deferrals so far
    origin: Source
    due: float  # unix time before which it must not run
    reason: str = ""

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            (ATTEMPT, str(self.attempt).encode()),
            (DUE, f"{self.due:.3f}".encode()),
            (ORIGIN_TOPIC, self.origin.topic.encode()),
            (ORIGIN_PARTITION, str(self.origin.partition).encode()),
            (ORIGIN_OFFSET, str(self.origin.offset).encode()),
            (REASON, self.reason.encode()[:500]),
        ]

    @classmethod
    def from_headers(
        cls, headers: list[tuple[str, bytes]] | dict[str, bytes], fallback: Source
    ) -> RetryState:
        """Read the envelope; a message without one (hand-published) counts as a first retry."""
        found = dict(headers.items() if isinstance(headers, dict) else headers)
        try:
            return cls(
                attempt=int(found[ATTEMPT]),
                origin=Source(
                    found[ORIGIN_TOPIC].decode(), int(found[ORIGIN_PARTITION]), int(found[ORIGIN_OFFSET])
                ),
                due=float(found[DUE]),
                reason=found.get(REASON, b"").decode(errors="replace"),
            )
        except (KeyError, ValueError):
            return cls(attempt=1, origin=fallback, due=time.time())


def next_deferral(
    policy: DelayedRetry,
    prefix: str,
    previous: RetryState | None,
    origin: Source,
    at_least: float,
    reason: str,
) -> tuple[str, RetryState] | None:
    """The topic and envelope for one more deferral, or None when the attempts are used up."""
    attempt = (previous.attempt if previous else 0) + 1
    if attempt > policy.attempts:
        return None
    delay = policy.delays()[attempt - 1]
    state = RetryState(attempt, origin, time.time() + max(delay, at_least), reason)
    return tier_topics(prefix, policy)[delay], state
