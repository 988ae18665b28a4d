"""What a step sent and received, for the test console and debugging."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.http_types import HttpResult, OutgoingRequest


@dataclass
class Exchange:
    """The last request as sent (signed), the answer judged, what it parsed to and what it mapped."""

    request: OutgoingRequest | None = None
    response: HttpResult | None = None
    parsed: Any = None
    mapped: dict[str, Any] | None = None
