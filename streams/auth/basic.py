"""HTTP Basic authentication (RFC 7617)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from streams.auth import AuthFlow
from streams.http_types import OutgoingRequest
from streams.masking import learn


@dataclass(frozen=True)
class BasicAuth:
    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        learn(self.password, self.token)  # the base64 pair carries the password

    @property
    def token(self) -> str:
        return base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

    def auth_flow(self, request: OutgoingRequest) -> AuthFlow:
        request.headers["Authorization"] = f"Basic {self.token}"
        yield request
