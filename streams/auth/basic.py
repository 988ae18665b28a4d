"""HTTP Basic authentication (RFC 7617)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from streams.auth import AuthFlow
from streams.http_types import OutgoingRequest


@dataclass(frozen=True)
class BasicAuth:
    username: str
    password: str

    def auth_flow(self, request: OutgoingRequest) -> AuthFlow:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        request.headers["Authorization"] = f"Basic {token}"
        yield request
