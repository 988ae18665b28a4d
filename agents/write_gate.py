"""Writes and commits kept apart: under exactly-once a transaction commits only when no write
is half done, so every output in it has its input acked (and its offset in the commit)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager


class Count:
    """Things in progress, and a wait until there are none."""

    def __init__(self) -> None:
        self.value = 0
        self._zero = asyncio.Event()
        self._zero.set()

    @contextmanager
    def one(self) -> Iterator[None]:
        self.value += 1
        self._zero.clear()
        try:
            yield
        finally:
            self.value -= 1
            if self.value == 0:
                self._zero.set()

    async def until_zero(self) -> None:
        await self._zero.wait()


class WriteGate:
    """Any number of writes at once, or one commit: a commit waits for the writes in flight
    (sent, acknowledged and their inputs acked) and holds new ones until it is done."""

    def __init__(self) -> None:
        self._writes = Count()
        self._open = asyncio.Event()  # cleared while a commit holds the gate
        self._open.set()
        self._commit = asyncio.Lock()

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        while not self._open.is_set():
            await self._open.wait()
        with self._writes.one():
            yield

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._commit:
            self._open.clear()
            try:
                await self._writes.until_zero()
                yield
            finally:
                self._open.set()
