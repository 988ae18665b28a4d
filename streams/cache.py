"""The "last good result" cache behind the fallback chain: when a partner API is down, a step may answer
from the last successful response to the same request instead of failing the lead.

The engine only sees the ``ResponseCache`` protocol; the Kafka layer can back it with a changelog topic
(``CachedResponse.to_bytes`` is the record value, ``request_fingerprint`` the record key), tests and
single-process runs use ``InMemoryCache``. Both forget by the rule of ``streams.cache_index``: per
integration, after the longest ``cache:`` age of its steps and past ``max_entries``, oldest first.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import orjson

from streams.cache_index import DEFAULT_MAX_ENTRIES, CacheIndex, CacheLimit, CacheObserver, CachePolicy
from streams.config import RAISE, Reader
from streams.http_types import HttpResult

_FORMAT_VERSION = 1


@dataclass(frozen=True)
class CacheConfig:
    """An integration's ``cache:`` block: the bound of its fallback cache."""

    max_entries: int = DEFAULT_MAX_ENTRIES

    CONFIG: ClassVar[dict[str, Any]] = {
        "description": "The fallback cache of this integration's answers (steps with fallback: "
        "[{cache: AGE}]); entries expire after the longest AGE",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "max_entries": {
                "description": "entries kept (each worker holds them all); "
                "past it the oldest stored go first",
                "type": "integer",
                "minimum": 1,
                "maximum": 10000000,
            }
        },
    }

    @classmethod
    def from_config(cls, raw: Mapping[str, Any] | None, read: Reader = RAISE) -> CacheConfig:
        return cls(raw["max_entries"]) if raw and "max_entries" in raw else cls()


class CacheDecodeError(ValueError):
    """A changelog record is not a cached response (corrupt, or written by an incompatible version)."""


@dataclass(frozen=True)
class CachedResponse:
    """One stored response. ``stored_at`` is wall-clock epoch seconds, because entries travel between
    processes through the changelog and a monotonic clock means nothing in another process."""

    status: int
    headers: dict[str, str]
    body: bytes
    stored_at: float

    @classmethod
    def from_result(cls, result: HttpResult, stored_at: float) -> CachedResponse:
        return cls(status=result.status, headers=dict(result.headers), body=result.body, stored_at=stored_at)

    def to_result(self) -> HttpResult:
        """The cached response as the engine's response type; it took no time to "receive"."""
        return HttpResult(status=self.status, headers=dict(self.headers), body=self.body, elapsed=0.0)

    def to_bytes(self) -> bytes:
        """JSON (readable with kafka console tools) with the body base64-encoded, since bodies may be
        binary. A format version lets a later layout coexist with old records in a compacted topic."""
        if not math.isfinite(self.stored_at):
            raise ValueError(f"stored_at must be a finite timestamp, not {self.stored_at!r}")
        return orjson.dumps(
            {
                "v": _FORMAT_VERSION,
                "status": self.status,
                "headers": self.headers,
                "body": base64.b64encode(self.body).decode("ascii"),
                "stored_at": self.stored_at,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> CachedResponse:
        """Inverse of ``to_bytes``; raises ``CacheDecodeError`` rather than returning a half-valid entry."""
        try:
            record: Any = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise CacheDecodeError(f"cached response is not JSON: {exc}") from exc
        if not isinstance(record, dict) or record.get("v") != _FORMAT_VERSION:
            raise CacheDecodeError("cached response has an unknown format version")
        status, headers, body, stored_at = (record.get(k) for k in ("status", "headers", "body", "stored_at"))
        if type(status) is not int:
            raise CacheDecodeError("cached response status is not an integer")
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise CacheDecodeError("cached response headers are not a string map")
        if isinstance(stored_at, bool) or not isinstance(stored_at, int | float):
            raise CacheDecodeError("cached response stored_at is not a number")
        if not isinstance(body, str):
            raise CacheDecodeError("cached response body is not base64 text")
        try:
            raw = base64.b64decode(body, validate=True)
        except binascii.Error as exc:
            raise CacheDecodeError(f"cached response body is not valid base64: {exc}") from exc
        return cls(status=status, headers=headers, body=raw, stored_at=float(stored_at))


def stored_at_of(data: bytes) -> float | None:
    """When a changelog record's response was stored, without decoding its body (None: not a
    record this version can read)."""
    try:
        record: Any = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict) or record.get("v") != _FORMAT_VERSION:
        return None
    stored_at = record.get("stored_at")
    if isinstance(stored_at, bool) or not isinstance(stored_at, int | float) or not math.isfinite(stored_at):
        return None
    return float(stored_at)


class ResponseCache(Protocol):
    """Where last good results live. Async because the production store sits behind Kafka/RocksDB."""

    async def get(self, key: str) -> CachedResponse | None: ...

    async def put(self, key: str, response: CachedResponse) -> None: ...


class InMemoryCache:
    """A bounded ``ResponseCache`` in a dict, for tests and single-process runs (``try``).

    It forgets by the same rule as the worker's table (``streams.cache_index``): per integration,
    entries older than their limit's ``max_age`` expire and past ``max_entries`` the oldest stored
    go first. Without a ``policy``, every integration gets ``CacheLimit(max_entries, max_age)``.
    Whether an entry is fresh enough for a particular step is still the caller's decision, through
    ``fresh``.
    """

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.time,
        max_age: float | None = None,
        *,
        policy: CachePolicy | None = None,
        observer: CacheObserver | None = None,
    ) -> None:
        policy = policy or CachePolicy(default=CacheLimit(max_entries, max_age))
        self.clock = clock
        self.index = CacheIndex(policy, observer)
        self._entries: dict[str, CachedResponse] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> CachedResponse | None:
        self._forget_due()
        return self._entries.get(key)

    async def put(self, key: str, response: CachedResponse) -> None:
        self._entries[key] = response
        self.index.record(key, response.stored_at)
        self._forget_due()

    def _forget_due(self) -> None:
        for key, _ in self.index.due(self.clock()):
            del self._entries[key]


def fresh(entry: CachedResponse, max_age: float, now: float) -> bool:
    """Whether ``entry`` is at most ``max_age`` seconds old at ``now`` (the boundary counts as fresh).

    An entry stamped slightly in the future (clock skew between the instances sharing a changelog)
    counts as age zero rather than being thrown away.
    """
    return max(0.0, now - entry.stored_at) <= max_age


def request_fingerprint(integration: str, method: str, url: str, body: bytes | None) -> str:
    """The cache key: ``INTEGRATION:`` and a sha256 hex over the integration name, method, URL and
    body, nothing else. The readable prefix is what the cache's per-integration limits go by
    (``streams.cache_index.integration_of``); keys of the earlier, unprefixed format belong to no
    integration, so a worker with a flow's policy deletes them.

    Headers are left out on purpose. Auth headers rotate (OAuth2 tokens, HMAC signatures with a
    timestamp), and so do per-attempt headers like ``Idempotency-Key`` or request ids; any of them in
    the key would make every request a miss. The cost: a cached response is served regardless of which
    credentials asked, so two tenants sharing one integration name and identical URL/body would share
    results. Keep per-tenant data in the URL or body (or in the integration name) if that matters.
    Credentials in the query string (``?api_key=``) are part of the URL, so rotating them does defeat the
    cache. The URL is taken as rendered; the engine renders deterministically, so no normalisation.

    Each field is length-prefixed, so ("ab", "c") and ("a", "bc") cannot collide, and a missing body is
    distinguished from an empty one.
    """
    digest = hashlib.sha256(b"leadstreams-request-v1")
    for part in (integration.encode(), method.upper().encode(), url.encode()):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    if body is None:
        digest.update(b"\x00")
    else:
        digest.update(b"\x01" + len(body).to_bytes(8, "big"))
        digest.update(body)
    return f"{integration}:{digest.hexdigest()}"
