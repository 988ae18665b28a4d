"""Which cached responses to forget, and when: the rule every ``ResponseCache`` here applies.

Entries are grouped by integration (the part of the key before its last ``:``, see
``streams.cache.request_fingerprint``). Each group has a ``CacheLimit``: entries older than
``max_age`` expire, and past ``max_entries`` the oldest go first. "Oldest" is by the time the
response was stored (written into the entry itself), ties broken by key, so every worker reading
the same changelog reaches the same decisions, and a restart that replays old entries drops them
again instead of bringing them back. Reads do not count as use: a read is not in the changelog,
so workers could not agree on a least-recently-used order.

The index holds keys and timestamps only; the store (a dict, a Faust table) holds the bodies and
deletes what ``due`` returns.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

DEFAULT_MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class CacheLimit:
    """``max_entries`` per integration; ``max_age`` in seconds (None: entries never expire by age)."""

    max_entries: int = DEFAULT_MAX_ENTRIES
    max_age: float | None = None

    def __post_init__(self) -> None:
        if self.max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if self.max_age is not None and not self.max_age >= 0:
            raise ValueError("max_age must be a number of seconds >= 0")


@dataclass(frozen=True)
class CachePolicy:
    """A limit per integration. ``default`` covers integrations not named; None means such
    entries are dropped: a flow's policy names every integration whose answers it can read, so
    any other key (a renamed integration, a step that no longer caches, a key from an older key
    format) would never be read again."""

    limits: Mapping[str, CacheLimit] = field(default_factory=dict)
    default: CacheLimit | None = field(default_factory=CacheLimit)

    def limit_for(self, integration: str) -> CacheLimit | None:
        return self.limits.get(integration, self.default)


class CacheObserver(Protocol):
    """Where the index reports its size (the ``leadstreams_cache_*`` metrics)."""

    def entries(self, integration: str, count: int) -> None: ...

    def evicted(self, integration: str, reason: str, count: int) -> None: ...


def integration_of(key: str) -> str:
    """The integration a cache key belongs to ("" for a key without one: an older key format)."""
    return key.rpartition(":")[0]


@dataclass
class _Group:
    limit: CacheLimit | None
    # (stored_at, key), oldest first. Lazily cleaned: an item whose key was rewritten or
    # removed stays until it reaches the top (a heap has no cheap delete).
    heap: list[tuple[float, str]] = field(default_factory=list)
    size: int = 0


class CacheIndex:
    def __init__(self, policy: CachePolicy | None = None, observer: CacheObserver | None = None) -> None:
        self.policy = policy or CachePolicy()
        self.observer = observer
        self._stored_at: dict[str, float] = {}
        self._groups: dict[str, _Group] = {}

    def __len__(self) -> int:
        return len(self._stored_at)

    def __contains__(self, key: object) -> bool:
        return key in self._stored_at

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._stored_at))  # a copy: callers delete while iterating

    def sizes(self) -> dict[str, int]:
        return {name: group.size for name, group in self._groups.items()}

    def record(self, key: str, stored_at: float) -> None:
        """An entry was written (here, or by another worker: seen in the changelog)."""
        name = integration_of(key)
        group = self._groups.get(name)
        if group is None:
            group = self._groups[name] = _Group(self.policy.limit_for(name))
        previous = self._stored_at.get(key)
        if previous == stored_at:
            return  # the changelog echoing this worker's own write
        self._stored_at[key] = stored_at
        heapq.heappush(group.heap, (stored_at, key))
        if previous is None:
            group.size += 1
            self._report(name, group)
        self._maybe_compact(group)

    def forget(self, key: str) -> None:
        """An entry was deleted (a tombstone in the changelog, from any worker)."""
        if self._stored_at.pop(key, None) is None:
            return
        name = integration_of(key)
        group = self._groups[name]
        group.size -= 1
        self._report(name, group)
        self._maybe_compact(group)

    def due(self, now: float) -> list[tuple[str, float]]:
        """Remove and return the entries (key, stored_at) to delete at ``now``: expired, over the
        bound (oldest first), or of an integration the policy has no limit for."""
        gone: list[tuple[str, float]] = []
        for name, group in self._groups.items():
            before = len(gone)
            expired = 0
            limit = group.limit
            while group.heap:
                stored_at, key = group.heap[0]
                if self._stored_at.get(key) != stored_at:
                    heapq.heappop(group.heap)  # rewritten or removed since
                    continue
                if limit is not None and limit.max_age is not None and now - stored_at > limit.max_age:
                    expired += 1
                elif limit is not None and group.size <= limit.max_entries:
                    break
                heapq.heappop(group.heap)
                del self._stored_at[key]
                group.size -= 1
                gone.append((key, stored_at))
            if len(gone) > before:
                self._report(name, group)
                if self.observer is not None:
                    full = len(gone) - before - expired
                    for reason, count in (("expired", expired), ("full" if limit else "unused", full)):
                        if count:
                            self.observer.evicted(name, reason, count)
        return gone

    def _maybe_compact(self, group: _Group) -> None:
        """Drop the heap's stale items once they outnumber the live ones (rewrites, tombstones
        from other workers): the heap stays O(entries) whatever the traffic."""
        if len(group.heap) <= 2 * group.size + 64:
            return
        group.heap = [(t, k) for t, k in group.heap if self._stored_at.get(k) == t]
        heapq.heapify(group.heap)

    def _report(self, name: str, group: _Group) -> None:
        if self.observer is not None:
            self.observer.entries(name, group.size)
