"""A static bearer token (``Authorization: Bearer …``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.auth import AuthFlow
from streams.headers import header_value
from streams.http_types import OutgoingRequest
from streams.masking import learn


@dataclass(frozen=True)
class BearerAuth:
    token: str = field(repr=False)

    def __post_init__(self) -> None:
        learn(self.token)

    def auth_flow(self, request: OutgoingRequest) -> AuthFlow:
        request.headers["Authorization"] = header_value("Authorization", f"Bearer {self.token}")
        yield request
