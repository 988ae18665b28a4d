"""A static bearer token (``Authorization: Bearer …``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from streams.auth import AuthFlow
from streams.config import RAISE, Reader
from streams.headers import header_value
from streams.http_types import OutgoingRequest
from streams.masking import learn


@dataclass(frozen=True)
class BearerAuth:
    token: str = field(repr=False)

    CONFIG: ClassVar[dict[str, Any]] = {
        "properties": {"type": {"const": "bearer"}, "token": {"type": "string"}},
        "required": ["type", "token"],
        "additionalProperties": False,
    }

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], read: Reader = RAISE) -> BearerAuth:
        return cls(token=str(raw["token"]))

    def __post_init__(self) -> None:
        learn(self.token)

    def auth_flow(self, request: OutgoingRequest) -> AuthFlow:
        request.headers["Authorization"] = header_value("Authorization", f"Bearer {self.token}")
        yield request
