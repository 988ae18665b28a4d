"""A static bearer token (``Authorization: Bearer …``)."""

from __future__ import annotations

from dataclasses import dataclass

from streams.auth import AuthFlow
from streams.headers import header_value
from streams.http_types import OutgoingRequest


@dataclass(frozen=True)
class BearerAuth:
    token: str

    def auth_flow(self, request: OutgoingRequest) -> AuthFlow:
        request.headers["Authorization"] = header_value("Authorization", f"Bearer {self.token}")
        yield request
