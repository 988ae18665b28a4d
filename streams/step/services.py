"""What a step needs beyond its own definition; one per flow in a worker (or test)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from streams.activity import FlowActivity
from streams.cache import InMemoryCache, ResponseCache
from streams.metrics import Metrics
from streams.protections import Protections
from streams.transport import Transport


@dataclass
class StepServices:
    client: Transport
    protections: Protections  # each integration's circuit breaker, rate limiter and concurrency slots
    flow: str
    metrics: Metrics | None = None
    cache: ResponseCache = field(default_factory=InMemoryCache)
    can_defer: bool = False  # the flow has delayed retry topics
    rng: random.Random = field(default_factory=random.Random)
    activity: FlowActivity | None = None  # the worker's per-minute log of partners and leads
