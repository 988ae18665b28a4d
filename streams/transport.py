"""What the engine needs from an HTTP client: aiohttp for real, recorded answers offline."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Protocol

from streams.flow import Integration
from streams.http_types import HttpResult, OutgoingRequest

# The step being executed, for transports that answer per step (saved test cases).
current_step: ContextVar[str] = ContextVar("current_step", default="")


class Transport(Protocol):
    async def send(
        self, integration: Integration, request: OutgoingRequest, timeout: float
    ) -> HttpResult: ...

    async def close(self) -> None: ...
