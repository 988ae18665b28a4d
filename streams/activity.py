"""What a worker did lately, in a few lines a person reads at info level: partners that
fail (at once when an outage starts, then a count per minute) and each flow's leads per
minute with their outcomes and p95 time.

The engine counts on the hot path (a dict increment and a bisect per lead, a dict
increment per partner request); all formatting happens once per report. No Kafka here:
the worker runs ``log_every`` as a task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("leadstreams.activity")

# Lead durations are counted in buckets 5% apart (0.5 ms to ~20 min): a constant memory and
# one bisect per lead whatever the rate, and a p95 within 5% (its bucket's upper bound).
_GROWTH = 1.05
BOUNDS: tuple[float, ...] = tuple(0.0005 * _GROWTH**i for i in range(302))  # the last ~1190 s
MAX_REASONS = 20  # distinct failure reasons kept per integration and window (the first ones)
SHOWN_REASONS = 3  # in a report line
OUTCOME_ORDER = ("success", "failure", "error")  # always shown; others (skip, deferred) when seen


@dataclass(frozen=True)
class Line:
    level: int
    message: str
    fields: dict[str, object]  # for JSON logs (``extra``)


class FlowActivity:
    """One flow's counters for the current window; the engine holds it (FlowRunner)."""

    __slots__ = (
        "_log",
        "alerted",
        "buckets",
        "failures",
        "name",
        "outcomes",
        "reasons",
        "requests",
        "transport",
    )

    def __init__(self, name: str, logger: logging.Logger) -> None:
        self.name = name
        self._log = logger
        # Integrations whose outage was announced; cleared once one answers a window through.
        self.alerted: set[str] = set()
        self._reset()

    def _reset(self) -> None:
        self.outcomes: dict[str, int] = {}
        self.buckets = [0] * (len(BOUNDS) + 1)
        self.requests: dict[str, int] = {}  # per integration, failed ones included
        self.failures: dict[str, int] = {}
        self.transport: dict[str, int] = {}  # failures without an answer (refused, timeout...), not 5xx
        self.reasons: dict[str, dict[str, int]] = {}

    def lead(self, outcome: str, seconds: float) -> None:
        """A lead is done (its output is known): ``outcome`` as in its event, or ``deferred``."""
        outcomes = self.outcomes
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        self.buckets[bisect_right(BOUNDS, seconds)] += 1

    def answered(self, integration: str) -> None:
        """A partner request got an answer that is not a failure of the partner."""
        requests = self.requests
        requests[integration] = requests.get(integration, 0) + 1

    def failed(self, integration: str, reason: str, answered: bool = False) -> None:
        """A partner request failed: no answer (``answered=False``: refused, timeout, TLS...)
        or a 5xx. The first failure after a quiet window is logged at once."""
        self.answered(integration)
        self.failures[integration] = self.failures.get(integration, 0) + 1
        if not answered:
            self.transport[integration] = self.transport.get(integration, 0) + 1
        reasons = self.reasons.setdefault(integration, {})
        if reason in reasons or len(reasons) < MAX_REASONS:
            reasons[reason] = reasons.get(reason, 0) + 1
        if integration not in self.alerted:
            self.alerted.add(integration)
            state = "failing" if answered else "unreachable"
            self._log.warning(
                "partner %s %s: %s (first failure; counted every minute while it lasts)",
                integration, state, reason, extra={"flow": self.name, "integration": integration},
            )  # fmt: skip

    def report(self, seconds: float) -> list[Line]:
        """The window's lines (``seconds`` long), and a new window."""
        lines: list[Line] = []
        window = f"{seconds:.0f}s"
        for integration, requests in sorted(self.requests.items()):
            failures = self.failures.get(integration, 0)
            fields: dict[str, object] = {"flow": self.name, "integration": integration}
            if failures:
                state = "unreachable" if self.transport.get(integration) else "failing"
                reasons = _reasons(self.reasons.get(integration, {}), failures)
                lines.append(Line(logging.WARNING, f"partner {integration} {state}: {failures} of {requests} "
                                  f"requests failed in the last {window} ({reasons})", fields))  # fmt: skip
            elif integration in self.alerted:  # it failed before and answers again
                self.alerted.discard(integration)
                lines.append(Line(logging.INFO, f"partner {integration} answering again: {requests} requests "
                                  f"in the last {window}, none failed", fields))  # fmt: skip
        leads = sum(self.outcomes.values())
        if leads:
            counts = [f"{self.outcomes.get(name, 0)} {name}" for name in OUTCOME_ORDER]
            others = sorted(self.outcomes.items())
            counts += [f"{n} {name}" for name, n in others if name not in OUTCOME_ORDER]
            p95 = _format_ms(_quantile(self.buckets, leads, 0.95))
            lines.append(Line(logging.INFO, f"flow {self.name}: {leads} leads in the last {window}: "
                              f"{', '.join(counts)}; p95 {p95}", {"flow": self.name}))  # fmt: skip
        self._reset()
        return lines


class ActivityLog:
    """One per worker: ``flow(name)`` hands the engine its counters; ``log_every`` reports."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, logger: logging.Logger = log) -> None:
        self._clock = clock
        self._log = logger
        self._flows: dict[str, FlowActivity] = {}
        self._since = clock()

    def flow(self, name: str) -> FlowActivity:
        activity = self._flows.get(name)
        if activity is None:
            activity = self._flows[name] = FlowActivity(name, self._log)
        return activity

    def report(self) -> list[Line]:
        """Lines for the time since the last report (nothing when idle and healthy)."""
        now = self._clock()
        seconds, self._since = now - self._since, now
        return [line for flow in self._flows.values() for line in flow.report(seconds)]

    def log_report(self) -> None:
        for line in self.report():
            self._log.log(line.level, "%s", line.message, extra=line.fields)

    async def log_every(self, seconds: float = 60.0) -> None:
        """Report every ``seconds`` until cancelled (the worker's task)."""
        self._since = self._clock()
        while True:
            await asyncio.sleep(seconds)  # a period, not a wait for something to happen
            try:
                self.log_report()
            except Exception:  # a bug here must not end the worker's other work
                self._log.exception("activity report failed")


def _reasons(reasons: dict[str, int], failures: int) -> str:
    """``reason`` alone, or ``40x reason, 10x other`` (most frequent first)."""
    ranked = sorted(reasons.items(), key=lambda item: -item[1])
    if len(ranked) == 1:
        return ranked[0][0]
    shown = ", ".join(f"{n}x {reason}" for reason, n in ranked[:SHOWN_REASONS])
    rest = failures - sum(n for _, n in ranked[:SHOWN_REASONS])
    return f"{shown}, {rest} other" if rest else shown


def _quantile(buckets: list[int], total: int, q: float) -> float:
    """The upper bound (seconds) of the bucket holding the ``q`` quantile."""
    rank, seen = q * total, 0
    for index, count in enumerate(buckets):
        seen += count
        if seen >= rank:
            return BOUNDS[min(index, len(BOUNDS) - 1)]
    return BOUNDS[-1]


def _format_ms(seconds: float) -> str:
    if seconds >= 10:
        return f"{seconds:.1f} s"
    ms = seconds * 1000
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"
