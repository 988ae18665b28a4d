"""The flow model: what a loaded, validated, compiled flow file holds."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from typing import Any, ClassVar

from streams.auth import Auth, NoAuth
from streams.bodies import Body
from streams.cache_index import DEFAULT_MAX_ENTRIES, CacheLimit, CachePolicy
from streams.circuit import CircuitConfig
from streams.config import DURATION, RAISE, Reader, duration, durations, given, same
from streams.outcomes import Outcome
from streams.retry_policy import RetryConfig
from streams.templates import Value

__all__ = ["CircuitConfig"]  # (kept importable from here: it moved beside the breaker)

MIN_SECRET = 6  # characters


@dataclass(frozen=True)
class Topics:
    input: str
    enriched: str
    errors: str
    retry: str | None = None  # prefix of the delayed retry topics (one per delay tier)
    notifications: str | None = None  # the queue of `notify:` steps (streams.notifications)


class MissingTopics(ValueError):
    """A flow without ``topics:`` asked to run as a worker."""


def require_topics(flow: Flow) -> Topics:
    """The flow's topics, for the worker: library use, ``try`` and ``test`` need none, a worker
    does. MissingTopics (one line, naming the key) when the file has no ``topics:``."""
    if flow.topics is None:
        raise MissingTopics(
            f"{flow.source_file}: the worker needs `topics:` in the flow file "
            "(e.g. topics: {input: leads.in, enriched: leads.out, errors: leads.errors})"
        )
    return flow.topics


@dataclass(frozen=True)
class DelayedRetry:
    """Leads whose partner is down or slow wait on retry topics instead of blocking
    a partition: the n-th deferral waits ``first * factor**(n-1)`` capped at ``cap``."""

    first: float = 5.0
    factor: float = 4.0
    cap: float = 300.0
    attempts: int = 5  # deferrals before the lead goes to the errors topic

    CONFIG: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "description": "Delays of the retry topics: the n-th deferral waits first*factor^(n-1), at most cap; "
        "after `attempts` deferrals the lead goes to the errors topic.",
        "properties": {
            "first": DURATION,
            "factor": {"type": "number", "minimum": 1},
            "cap": DURATION,
            "attempts": {"type": "integer", "minimum": 1, "maximum": 20},
        },
    }

    @classmethod
    def from_config(cls, raw: Mapping[str, Any] | None, read: Reader = RAISE) -> DelayedRetry:
        times = durations(read, "first", "cap", zero={"cap": "cap must be longer than 0"})
        return cls(**given(raw or {}, {**times, "factor": same, "attempts": same}))

    def delays(self) -> tuple[float, ...]:
        """The delay of each deferral, 1..attempts."""
        return tuple(min(self.cap, self.first * self.factor**n) for n in range(self.attempts))


@dataclass(frozen=True)
class Integration:
    name: str
    base_url: str | None = None
    timeout: float = 10.0
    concurrency: int = 100
    pool_size: int = 100
    keepalive: float = 30.0
    dns_cache: float = 300.0
    max_response_bytes: int = 1024 * 1024
    headers: dict[str, Value] = field(default_factory=dict)
    auth: Auth = field(default_factory=NoAuth)
    rate_limit: float | None = None  # requests per second for the whole consumer group
    burst: int = 0
    retry: RetryConfig = field(default_factory=RetryConfig)
    circuit: CircuitConfig | None = None
    allow_private_networks: bool = False
    allow_loopback: bool = False
    allowed_networks: tuple[IPv4Network | IPv6Network, ...] = ()
    cache_max_entries: int = DEFAULT_MAX_ENTRIES  # `cache: {max_entries}`: last good answers kept
    # A hash of the flow's name, the integration's block and the settings: a reloaded flow keeps
    # the running integration (pool, OAuth token, limiter, circuit) when it is unchanged.
    definition: str = field(default="", compare=False)


@dataclass(frozen=True)
class Route:
    """``routes:`` entry: the first whose condition holds picks the URL and timeout."""

    when: Value
    url: Value  # rendered with path encoding
    timeout: float | None = None


@dataclass(frozen=True)
class Fallback:
    """One source of a step's fallback chain, tried in order when the partner can't answer:
    ``url`` (the same request elsewhere), ``cache`` (last good answer younger than
    ``max_age``), ``default`` (fields written onto the lead, outcome success),
    ``retry_later`` (the delayed retry topic), ``skip`` (with the author's ``note``, if any,
    as the step's reason: ``skip: {note: "partner down"}``)."""

    kind: str
    url: Value | None = None
    max_age: float = 0.0
    default: dict[str, Value] = field(default_factory=dict)
    note: str | None = None


@dataclass(frozen=True)
class Price:
    value: Value
    default: float | None = None


@dataclass(frozen=True)
class RequestSpec:
    method: str
    url: Value | None  # rendered with path encoding; None when only routes give URLs
    query: dict[str, Value]
    headers: dict[str, Value]
    body: Body | None
    compress: str | None = None  # gzip | deflate | br: the body is sent compressed


SUCCESS_STATUSES = frozenset(range(200, 300))


@dataclass(frozen=True)
class BatchSpec:
    """``batch:`` of a step: one request per tumbling window of leads. A window opens with
    its first lead and closes ``window`` seconds later or when it holds ``max_leads``.
    ``results`` and ``match`` are dotted paths: the per-lead list in the response
    ("" = the response is the list) and the lead id inside each result."""

    max_leads: int
    window: float
    results: str = "results"
    match: str = "id"

    CONFIG: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["max_leads", "window"],
        "description": "Send one request per tumbling window of leads (per input partition): the window "
        "opens with its first lead and closes after `window` or at `max_leads`, whichever comes first. "
        "The request sees `batch.id`, `batch.leads`, `batch.size`; the response is split into one "
        "result per lead.",
        "properties": {
            "max_leads": {"type": "integer", "minimum": 1, "maximum": 10000},
            "window": DURATION,
            "results": {
                "type": "string",
                "description": "Dotted path to the list of per-lead results in the response "
                "('' = the response itself is the list).",
            },
            "match": {
                "type": "string",
                "minLength": 1,
                "description": "Dotted path, inside each result, of the lead id it belongs to.",
            },
        },
    }

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], read: Reader = RAISE) -> BatchSpec:
        window = duration(read, raw["window"], ("window",)) or 0.0
        if window <= 0:
            read.problem(("window",), "a batch window must be longer than 0")
        return cls(max_leads=raw["max_leads"], window=window, **given(raw, {"results": same, "match": same}))


@dataclass(frozen=True)
class NotifySpec:
    """``notify:`` of a step: the lead does not wait for it. Its request is queued with the
    lead's output and delivered by the notifications agent; ``important`` ones go through
    the delayed-retry tiers until the partner takes them or the tiers are used up."""

    important: bool = False

    CONFIG: ClassVar[dict[str, Any]] = {
        "description": "Fire and forget: the lead's event is written without waiting for this step; "
        "its request is queued on topics.notifications and delivered by the worker's notifications "
        "agent (`true`, or `{important: true}` to retry through the delayed-retry tiers).",
        "oneOf": [
            {"type": "boolean"},
            {
                "type": "object",
                "additionalProperties": False,
                "properties": {"important": {"type": "boolean"}},
            },
        ],
    }

    @classmethod
    def from_config(cls, raw: bool | Mapping[str, Any], read: Reader = RAISE) -> NotifySpec | None:
        if raw is False:
            return None
        return cls(important=bool(raw.get("important", False))) if isinstance(raw, Mapping) else cls()


@dataclass(frozen=True)
class OutcomeRule:
    """Rules see 2xx responses unless ``statuses`` says otherwise; other
    statuses go by the status policy (e.g. ``HTTP 422: invalid email``)."""

    when: Value
    outcome: Outcome
    reason: Value | None
    statuses: frozenset[int] = SUCCESS_STATUSES

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], read: Reader = RAISE) -> OutcomeRule:
        """One ``response.outcome`` entry (its templates in the step's strictness)."""
        return cls(
            when=read.compile(raw.get("when", True), ("when",)),
            outcome=Outcome(raw["outcome"]),
            reason=read.compile(raw["reason"], ("reason",)) if "reason" in raw else None,
            **({"statuses": statuses(raw["status"])} if "status" in raw else {}),
        )


def statuses(raw: list[int | str]) -> frozenset[int]:
    """``[409, "5xx"]`` -> the set of status codes."""
    codes: set[int] = set()
    for item in raw:
        if isinstance(item, int):
            codes.add(item)
        else:
            first = int(item[0]) * 100
            codes.update(range(first, first + 100))
    return frozenset(codes)


@dataclass(frozen=True)
class Step:
    name: str
    integration: Integration
    request: RequestSpec
    response_format: str = "auto"
    outcome_rules: tuple[OutcomeRule, ...] = ()
    when: Value | None = None
    map: dict[str, Value] = field(default_factory=dict)
    store: dict[str, Value] = field(default_factory=dict)
    timeout: float | None = None
    strict: bool = False
    continue_on: frozenset[Outcome] = frozenset()
    routes: tuple[Route, ...] = ()
    price: Price | None = None
    reference: Value | None = None
    retry: RetryConfig | None = None  # overrides the integration's
    fallback: tuple[Fallback, ...] = ()
    batch: BatchSpec | None = None
    notify: NotifySpec | None = None  # the lead does not wait: the step's request is queued

    @property
    def retry_config(self) -> RetryConfig:
        return self.retry or self.integration.retry

    @functools.cached_property  # asked on every answer; the step never changes
    def judged_statuses(self) -> frozenset[int]:
        """Statuses an outcome rule was written for outside 2xx: the flow author decided
        what they mean, so the status policy does not retry them."""
        return frozenset().union(*(rule.statuses for rule in self.outcome_rules)) - SUCCESS_STATUSES

    @functools.cached_property
    def caches(self) -> bool:
        return any(source.kind == "cache" for source in self.fallback)

    @property
    def effective_timeout(self) -> float:
        return self.timeout if self.timeout is not None else self.integration.timeout


@dataclass(frozen=True)
class Flow:
    name: str
    topics: Topics | None  # None: the file has none (library use, try, test); see require_topics
    settings: dict[str, Any]
    integrations: dict[str, Integration]
    stages: tuple[tuple[Step, ...], ...]  # one step, or a parallel group run at once
    source_file: str = "<flow>"
    delayed_retry: DelayedRetry | None = None  # set when topics.retry is
    version: str = ""  # the file's content hash: events carry it as flow_version

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(step for stage in self.stages for step in stage)

    @property
    def notification_retry(self) -> DelayedRetry:
        """The tiers of important notifications: the flow's delayed retries, or the defaults."""
        return self.delayed_retry or DelayedRetry()

    @functools.cached_property
    def cache_policy(self) -> CachePolicy:
        """What the response cache keeps: per integration whose steps have ``fallback: [{cache:
        AGE}]``, up to its ``cache.max_entries`` entries, each for the longest AGE among those
        steps (steps of one integration share entries: the key has no step in it). Entries of
        any other integration are never read by this flow, so the policy drops them."""
        limits: dict[str, CacheLimit] = {}
        for step in self.steps:
            ages = [source.max_age for source in step.fallback if source.kind == "cache"]
            if not ages:
                continue
            name = step.integration.name
            known = limits.get(name)
            age = max(ages) if known is None or known.max_age is None else max(*ages, known.max_age)
            limits[name] = CacheLimit(step.integration.cache_max_entries, age)
        return CachePolicy(limits, default=None)

    @property
    def secrets(self) -> list[str]:
        """Setting values to mask. Values under 6 characters are left alone: masking them
        would rewrite innocent lead data (a phone number containing "1234")."""
        return [
            str(v) for v in self.settings.values() if not isinstance(v, bool) and len(str(v)) >= MIN_SECRET
        ]
