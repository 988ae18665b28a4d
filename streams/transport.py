"""What the engine needs from an HTTP client: aiohttp for real, recorded answers offline."""

from __future__ import annotations

from typing import Protocol

from streams.flow import Integration
from streams.http_types import HttpResult, OutgoingRequest


class Transport(Protocol):
    async def send(
        self, integration: Integration, request: OutgoingRequest, timeout: float
    ) -> HttpResult: ...

    async def close(self) -> None: ...
