"""HTTP Basic authentication (RFC 7617)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from streams.auth import AuthFlow
from streams.config import RAISE, Reader
from streams.http_types import OutgoingRequest
from streams.masking import learn


@dataclass(frozen=True)
class BasicAuth:
    username: str
    password: str = field(repr=False)

    CONFIG: ClassVar[dict[str, Any]] = {
        "properties": {
            "type": {"const": "basic"},
            "username": {"type": "string"},
            "password": {"type": "string"},
        },
        "required": ["type", "username", "password"],
        "additionalProperties": False,
    }

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], read: Reader = RAISE) -> BasicAuth:
        return cls(username=str(raw["username"]), password=str(raw["password"]))

    def __post_init__(self) -> None:
        learn(self.password, self.token)  # the base64 pair carries the password

    @property
    def token(self) -> str:
        return base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

    def auth_flow(self, request: OutgoingRequest) -> AuthFlow:
        request.headers["Authorization"] = f"Basic {self.token}"
        yield request
