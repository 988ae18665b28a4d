"""The flow model: what a loaded, validated, compiled flow file holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streams.auth import Auth, NoAuth
from streams.bodies import Body
from streams.outcomes import Outcome
from streams.templates import Value


@dataclass(frozen=True)
class Topics:
    input: str
    enriched: str
    errors: str


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


@dataclass(frozen=True)
class Route:
    """``routes:`` entry: the first whose condition holds picks the URL and timeout."""

    when: Value
    url: Value  # rendered with path encoding
    timeout: float | None = None


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


SUCCESS_STATUSES = frozenset(range(200, 300))


@dataclass(frozen=True)
class OutcomeRule:
    """Rules see 2xx responses unless ``statuses`` says otherwise; other
    statuses go by the status policy (e.g. ``HTTP 422: invalid email``)."""

    when: Value
    outcome: Outcome
    reason: Value | None
    statuses: frozenset[int] = SUCCESS_STATUSES


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

    @property
    def effective_timeout(self) -> float:
        return self.timeout if self.timeout is not None else self.integration.timeout


@dataclass(frozen=True)
class Flow:
    name: str
    topics: Topics
    settings: dict[str, Any]
    integrations: dict[str, Integration]
    stages: tuple[tuple[Step, ...], ...]  # one step, or a parallel group run at once
    source_file: str = "<flow>"

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(step for stage in self.stages for step in stage)

    @property
    def secrets(self) -> list[str]:
        """Setting values worth masking (short values would mask innocent text)."""
        return [str(v) for v in self.settings.values() if isinstance(v, str) and len(v) >= 4]
