"""The status policy: what to do after an attempt, by HTTP status or transport error.

=============================  ==================================================================
status / event                 default action
=============================  ==================================================================
2xx, 3xx                       DONE (the outcome rules take it from there)
401, 403                       FAIL, counted as an auth failure: the auth flow has already
                               refreshed the credentials and retried once before returning these
429                            RETRY after ``Retry-After`` (backoff when it is absent or junk)
500, 502, 504, connection      RETRY with exponential backoff and full jitter, up to ``attempts``
503                            FALLBACK at once
timeout                        ``on_timeout``: retry (one more attempt), fallback or retry_topic
any other status (400, 404..)  FAIL: asking again, here or elsewhere, would get the same answer
=============================  ==================================================================

FALLBACK and FAIL differ in blame. FALLBACK says "this source cannot answer now": the step moves to
its fallback chain, and only when the chain is empty (or exhausted) is the outcome error. FAIL says
"this request is wrong" (or our credentials are): the step's outcome is error without trying the
chain. So transient conditions that run out of attempts end in FALLBACK, never FAIL.

With ``retry_topic`` set (the flow has a delayed retry topic), transient conditions that run out of
inline attempts, or would need a longer wait than ``max_inline_wait``, end in DEFER instead: the lead
goes to the retry topic and comes back after ``max(decision.delay, retry_topic_delay(n))`` for its
n-th deferral. 503 and ``on_timeout: fallback`` still go to the chain at once; they say where to go,
not that the source is merely slow.

``attempt`` counts the attempts made so far, the one being judged included (the first is 1).
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from streams.config import DURATION, RAISE, Reader, durations, given, same

TransportError = Literal["timeout", "connection"]
OnTimeout = Literal["retry", "fallback", "retry_topic"]
_DIGITS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*$")


class Action(StrEnum):
    DONE = "done"
    RETRY = "retry"  # again, inline, after ``delay``
    FALLBACK = "fallback"  # the next source of the step's fallback chain; error when there is none
    DEFER = "defer"  # the delayed retry topic, not before ``delay``
    FAIL = "fail"  # outcome error, no fallback


@dataclass(frozen=True)
class Decision:
    action: Action
    delay: float = 0.0  # seconds: before the retry (RETRY) or at least before the redelivery (DEFER)
    reason: str = ""
    auth_failure: bool = False  # for the auth failure counter


@dataclass(frozen=True)
class RetryConfig:
    """The policy of an integration; a step overrides fields with ``dataclasses.replace``."""

    attempts: int = 3  # in all, the first included
    backoff: float = 0.2  # seconds: the jitter cap of the first retry, doubling after each
    max_backoff: float = 5.0
    max_inline_wait: float = 10.0  # a longer wait would hold the partition: DEFER or FALLBACK instead
    on_timeout: OnTimeout = "retry"
    timeout_attempts: int = 2  # a timeout costs a full timeout each time: one retry, then fallback
    retry_topic: bool = False
    retry_statuses: frozenset[int] = frozenset({500, 502, 504})
    fallback_statuses: frozenset[int] = frozenset({503})
    retry_after_statuses: frozenset[int] = frozenset({429})
    auth_statuses: frozenset[int] = frozenset({401, 403})

    CONFIG: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "description": "Status policy: 500/502/504/connection errors retried with backoff, 429 after "
        "Retry-After, 503 to the fallback chain, 4xx no retry.",
        "properties": {
            "attempts": {"type": "integer", "minimum": 1, "maximum": 20},
            "backoff": DURATION,
            "max_backoff": DURATION,
            "max_inline_wait": DURATION,
            "on_timeout": {"enum": ["retry", "fallback", "retry_topic"]},
            "timeout_attempts": {"type": "integer", "minimum": 1, "maximum": 20},
            **{
                key: {"type": "array", "items": {"type": "integer", "minimum": 100, "maximum": 599}}
                for key in ("retry_statuses", "fallback_statuses", "retry_after_statuses")
            },
        },
    }

    @classmethod
    def from_config(
        cls, raw: Mapping[str, Any] | None, read: Reader = RAISE, base: RetryConfig | None = None
    ) -> RetryConfig:
        """``retry:`` over ``base`` (the integration's, or the defaults): keys left out keep
        the base's value."""
        base = cls() if base is None else base
        if not raw:
            return base
        statuses = dict.fromkeys(("retry_statuses", "fallback_statuses", "retry_after_statuses"), frozenset)
        plain = dict.fromkeys(("attempts", "timeout_attempts", "on_timeout"), same)
        times = durations(read, "backoff", "max_backoff", "max_inline_wait")
        changes = given(raw, {**times, **plain, **statuses})
        try:
            return dataclasses.replace(base, **changes)
        except ValueError as exc:
            read.problem((), str(exc))
            return base

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.timeout_attempts < 1:
            raise ValueError("attempts and timeout_attempts must be at least 1")
        if min(self.backoff, self.max_backoff, self.max_inline_wait) < 0:
            raise ValueError("backoff, max_backoff and max_inline_wait must not be negative")
        if self.on_timeout not in ("retry", "fallback", "retry_topic"):
            raise ValueError(f"on_timeout must be retry, fallback or retry_topic, not {self.on_timeout!r}")
        if self.on_timeout == "retry_topic" and not self.retry_topic:
            raise ValueError("on_timeout: retry_topic needs a retry topic")
        sets = (self.retry_statuses, self.fallback_statuses, self.retry_after_statuses, self.auth_statuses)
        if sum(map(len, sets)) != len(frozenset().union(*sets)):
            raise ValueError("a status may be in only one of the retry, fallback, retry-after and auth sets")


def decide(
    config: RetryConfig,
    attempt: int,
    *,
    status: int | None = None,
    error: TransportError | None = None,
    retry_after: float | None = None,
    rng: random.Random,
) -> Decision:
    """The action after ``attempt``, which got ``status`` or failed with ``error``.

    ``retry_after`` is the response's ``Retry-After`` in seconds, from ``parse_retry_after``: parsing
    it needs the wall clock, which this function keeps out of. ``rng`` draws the jitter.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be at least 1, not {attempt}")
    if error == "timeout":
        if config.on_timeout == "fallback":
            return Decision(Action.FALLBACK, reason="timeout")
        if config.on_timeout == "retry_topic":
            return Decision(Action.DEFER, reason="timeout")
        return _again(config, attempt, min(config.attempts, config.timeout_attempts), None, "timeout", rng)
    if error == "connection":
        return _again(config, attempt, config.attempts, None, "connection error", rng)
    if error is not None:
        raise ValueError(f"unknown transport error: {error!r}")
    if status is None:
        raise ValueError("decide needs a status or an error")
    reason = f"HTTP {status}"
    if status < 400:
        return Decision(Action.DONE, reason=reason)
    if status in config.retry_after_statuses:
        return _again(config, attempt, config.attempts, retry_after, reason, rng)
    if status in config.retry_statuses:
        return _again(config, attempt, config.attempts, None, reason, rng)
    if status in config.fallback_statuses:
        return Decision(Action.FALLBACK, reason=reason)
    if status in config.auth_statuses:
        return Decision(Action.FAIL, reason=f"{reason}: auth failed", auth_failure=True)
    return Decision(Action.FAIL, reason=reason)


def backoff(config: RetryConfig, attempt: int, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(max_backoff, backoff * 2^(attempt-1))], so that callers who
    failed together do not come back together."""
    cap = config.max_backoff if attempt > 64 else min(config.max_backoff, config.backoff * 2 ** (attempt - 1))
    return rng.uniform(0.0, cap)


def _again(
    config: RetryConfig, attempt: int, limit: int, wait: float | None, reason: str, rng: random.Random
) -> Decision:
    """RETRY a transient condition inline if attempts and the wait allow, else DEFER or FALLBACK."""
    gives_up = Action.DEFER if config.retry_topic else Action.FALLBACK
    if attempt >= limit:
        return Decision(gives_up, wait or 0.0, f"{reason} after {attempt} attempts")
    delay = backoff(config, attempt, rng) if wait is None else max(0.0, wait)
    if delay > config.max_inline_wait:
        return Decision(gives_up, delay, f"{reason}: retry in {delay:g}s is too long to wait inline")
    return Decision(Action.RETRY, delay, reason)


def retry_topic_delay(attempt: int, first: float = 5.0, factor: float = 4.0, cap: float = 300.0) -> float:
    """Seconds before the ``attempt``-th redelivery from the retry topic (1-based): 5, 20, 80, 300..."""
    if attempt < 1:
        raise ValueError(f"attempt must be at least 1, not {attempt}")
    delay = first
    for _ in range(attempt - 1):
        if delay >= cap:
            break
        delay *= factor
    return min(delay, cap)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date (``now`` is the
    wall clock, epoch seconds). None when absent or unreadable, so the caller falls back to backoff;
    a date in the past means no wait."""
    if value is None:
        return None
    match = _DIGITS.match(value)
    if match:
        seconds = float(match.group(1))
        return seconds if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by RFC 5322, just without the promise
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)
