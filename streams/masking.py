"""Settings are secrets: replace their values wherever text or event bytes leave the engine."""

from __future__ import annotations

import orjson

MASK = "***"


class Masker:
    def __init__(self, secrets: list[str]) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._json_needles = [orjson.dumps(s)[1:-1] for s in self._secrets]

    def text(self, value: str) -> str:
        for secret in self._secrets:
            value = value.replace(secret, MASK)
        return value

    def json_bytes(self, payload: bytes) -> bytes:
        """Mask secrets inside serialised JSON (as they appear JSON-escaped)."""
        for needle in self._json_needles:
            payload = payload.replace(needle, MASK.encode())
        return payload
