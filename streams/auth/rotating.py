"""Several static tokens used in turn, to spread calls over per-token rate limits."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from streams.auth import AuthFlow
from streams.config import RAISE, Reader, given, optional_text
from streams.headers import header_value
from streams.http_types import OutgoingRequest
from streams.masking import learn


@dataclass(frozen=True)
class RotatingTokens:
    """Round robin over ``tokens``: ``<header>: <scheme> <token>`` (just the token when scheme is None).

    The turn is taken synchronously before the request is yielded, so concurrent leads on one
    event loop never get the same turn (``itertools.count`` is atomic in CPython, too).
    """

    tokens: Sequence[str] = field(repr=False)  # stored as a tuple
    header: str = "Authorization"
    scheme: str | None = "Bearer"
    _turns: itertools.count[int] = field(
        default_factory=itertools.count, init=False, repr=False, compare=False
    )

    CONFIG: ClassVar[dict[str, Any]] = {
        "properties": {
            "type": {"const": "rotating"},
            "tokens": {"type": "array", "minItems": 1, "items": {"type": "string"}},
            "header": {"type": "string"},
            "scheme": {"type": ["string", "null"], "description": "null: the bare token"},
        },
        "required": ["type", "tokens"],
        "additionalProperties": False,
    }

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], read: Reader = RAISE) -> RotatingTokens:
        tokens = raw["tokens"]
        if not isinstance(tokens, list):
            raise ValueError("auth type 'rotating' needs 'tokens' as a list")
        options = given(raw, {"header": str, "scheme": optional_text})
        return cls(tokens=[str(token) for token in tokens], **options)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tuple(self.tokens))  # accept a list, keep it immutable
        if not self.tokens:
            raise ValueError("rotating auth needs at least one token")
        learn(*self.tokens)

    def auth_flow(self, request: OutgoingRequest) -> AuthFlow:
        token = self.tokens[next(self._turns) % len(self.tokens)]
        value = token if self.scheme is None else f"{self.scheme} {token}"
        request.headers[self.header] = header_value(self.header, value)
        yield request
