"""The fallback cache on a Faust GlobalTable: the engine's ResponseCache interface,
persisted in the table's changelog topic so it survives restarts."""

from __future__ import annotations

from typing import Any

from streams.cache import CacheDecodeError, CachedResponse


class TableCache:
    def __init__(self, table: Any) -> None:
        self.table = table

    async def get(self, key: str) -> CachedResponse | None:
        raw = self.table.get(key.encode())
        if not raw:
            return None
        try:
            return CachedResponse.from_bytes(raw)
        except CacheDecodeError:
            return None  # an entry from an incompatible version: as good as missing

    async def put(self, key: str, response: CachedResponse) -> None:
        self.table[key.encode()] = response.to_bytes()
