"""API key in a header (default ``X-API-Key``) or in a query parameter."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from streams.auth import AuthFlow
from streams.config import RAISE, Reader
from streams.headers import header_value
from streams.http_types import OutgoingRequest
from streams.masking import learn

DEFAULT_HEADER = "X-API-Key"


@dataclass(frozen=True)
class ApiKeyAuth:
    value: str
    header: str | None = None  # None: DEFAULT_HEADER (unless ``query`` is set)
    query: str | None = None

    CONFIG: ClassVar[dict[str, Any]] = {
        "properties": {
            "type": {"const": "api_key"},
            "value": {"type": "string"},
            "header": {"type": "string", "default": DEFAULT_HEADER},
            "query": {"type": "string", "description": "send the key as this query parameter instead"},
        },
        "required": ["type", "value"],
        "additionalProperties": False,
    }

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], read: Reader = RAISE) -> ApiKeyAuth:
        return cls(value=str(raw["value"]), header=raw.get("header"), query=raw.get("query"))

    def __post_init__(self) -> None:
        learn(self.value)  # also when it is not a setting (`value: ${PARTNER_KEY}`)

    def auth_flow(self, request: OutgoingRequest) -> AuthFlow:
        if self.query:
            request.url = request.url.update_query({self.query: self.value})
        else:
            name = self.header or DEFAULT_HEADER
            request.headers[name] = header_value(name, self.value)
        yield request
