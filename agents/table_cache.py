"""The fallback cache on a Faust GlobalTable: the engine's ResponseCache interface, persisted in
the table's changelog topic so it survives restarts, and bounded by ``streams.cache_index``.

Every worker holds the table and every worker writes to it; Faust applies the changelog (the
other workers' writes, everyone's tombstones, this worker's own writes again) to each copy in
groups of up to 1,000 records, so copies agree late, not at once. Each worker indexes what its
copy holds (its own writes at once, the rest by comparing with the table every ``sync_every``
seconds) and deletes by the same rule: expired, or oldest stored past the bound. Built from the
same changelog, the copies end up with the same entries (examples/cache_bound/two_workers.py).
A deletion is a tombstone in the changelog (a compacted topic: Faust creates a table's
changelog with ``cleanup.policy=compact``), so the topic shrinks too; two workers' tombstones
for one key are harmless. An entry this worker deleted can come back to its copy with a group
applied later (its write was in one group, its tombstone is in the next): it is deleted again
at the next comparison, and the copy may hold that many entries more for a moment. Before
deleting, the entry is read again: if another worker rewrote it, it is re-indexed at its new
time instead.

After a restart the changelog replays into the table; the first lookup or write indexes it and
deletes what expired meanwhile, so nothing comes back alive. Deletions happen only there (when
leads flow, after recovery), never while Faust replays.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from streams.cache import CacheDecodeError, CachedResponse, stored_at_of
from streams.cache_index import CacheIndex, CacheObserver, CachePolicy

# The stamp of a record this version cannot read: the oldest possible, so it goes first.
_UNREADABLE = float("-inf")


class TableCache:
    def __init__(
        self,
        table: Any,
        policy: CachePolicy | None = None,
        observer: CacheObserver | None = None,
        clock: Callable[[], float] = time.time,
        sync_every: float = 10.0,
    ) -> None:
        """``table``: ``app.GlobalTable(name, key_type=bytes, value_type=bytes, partitions=1, ...)``.
        Without a ``policy`` every integration keeps up to 10,000 entries and none expires by age
        (the worker passes ``flow.cache_policy``). ``sync_every``: seconds between comparisons
        with the table (about 4 ms for 10,000 entries, 65 ms for 100,000: not on every call)."""
        self.table = table
        self.index = CacheIndex(policy, observer)
        self.clock = clock
        self.sync_every = sync_every
        self._synced_at = float("-inf")

    def __len__(self) -> int:
        return len(self.index)

    async def get(self, key: str) -> CachedResponse | None:
        self._forget_due()
        raw = self.table.get(key.encode())
        if not raw:
            return None
        try:
            return CachedResponse.from_bytes(raw)
        except CacheDecodeError:
            return None  # an entry from an incompatible version: as good as missing

    async def put(self, key: str, response: CachedResponse) -> None:
        self.table[key.encode()] = response.to_bytes()
        self.index.record(key, response.stored_at)
        self._forget_due()

    def _forget_due(self) -> None:
        now = self.clock()
        if now - self._synced_at >= self.sync_every:
            self._synced_at = now
            self.sync()
        while due := self.index.due(now):
            rewritten = False
            for key, stored_at in due:
                raw_key = key.encode("utf-8", "surrogateescape")
                raw = self.table.data.get(raw_key)
                if raw is None:
                    continue  # already deleted (another worker's tombstone)
                current = _stamp(raw)
                if current != stored_at:
                    self.index.record(key, current)  # rewritten since: judge it at its new time
                    rewritten = True
                    continue
                del self.table[raw_key]  # here, and a tombstone to the changelog
            if not rewritten:
                return

    def sync(self) -> None:
        """Bring the index in line with this worker's copy of the table: entries other workers
        wrote or deleted (arrived through the changelog), or a replay after a restart."""
        held = {_text(raw_key): raw_key for raw_key in self.table.data}
        for key in self.index:
            if key not in held:
                self.index.forget(key)
        for key, raw_key in held.items():
            if key not in self.index:
                self.index.record(key, _stamp(self.table.data.get(raw_key)))


def _stamp(raw: bytes | None) -> float:
    stored_at = stored_at_of(raw) if raw else None
    return _UNREADABLE if stored_at is None else stored_at


def _text(raw_key: bytes) -> str:
    return raw_key.decode("utf-8", "surrogateescape")  # encodes back to the same bytes
