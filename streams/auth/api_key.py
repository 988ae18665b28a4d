"""API key in a header (default ``X-API-Key``) or in a query parameter."""

from __future__ import annotations

from dataclasses import dataclass

from streams.auth import AuthFlow
from streams.headers import header_value
from streams.http_types import OutgoingRequest
from streams.masking import learn


@dataclass(frozen=True)
class ApiKeyAuth:
    value: str
    header: str | None = None
    query: str | None = None

    def __post_init__(self) -> None:
        learn(self.value)  # also when it is not a setting (`value: ${PARTNER_KEY}`)

    def auth_flow(self, request: OutgoingRequest) -> AuthFlow:
        if self.query:
            request.url = request.url.update_query({self.query: self.value})
        else:
            name = self.header or "X-API-Key"
            request.headers[name] = header_value(name, self.value)
        yield request
