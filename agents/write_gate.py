"""Writes and commits kept apart: under exactly-once a transaction commits only when no write
is half done, so every output in it has its input acked (and its offset in the commit)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class WriteGate:
    """Any number of writes at once, or one commit: a commit waits for the writes in flight
    (sent, acknowledged and their inputs acked) and holds new ones until it is done."""

    def __init__(self) -> None:
        self._writes = 0
        self._no_writes = asyncio.Event()
        self._no_writes.set()
        self._open = asyncio.Event()  # cleared while a commit holds the gate
        self._open.set()
        self._commit = asyncio.Lock()

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        while not self._open.is_set():
            await self._open.wait()
        self._writes += 1
        self._no_writes.clear()
        try:
            yield
        finally:
            self._writes -= 1
            if self._writes == 0:
                self._no_writes.set()

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._commit:
            self._open.clear()
            try:
                await self._no_writes.wait()
                yield
            finally:
                self._open.set()
