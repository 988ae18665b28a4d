"""Settings are secrets: replace their values wherever text or event bytes leave the engine."""

from __future__ import annotations

from urllib.parse import quote, quote_plus
from xml.sax.saxutils import escape

import orjson
from yarl import URL

MASK = "***"


def spellings(secret: str) -> set[str]:
    """The secret as sent: raw, and as URL paths, queries, forms, JSON text and XML encode it."""
    return {
        secret,
        quote(secret, safe=""),  # a path segment
        quote_plus(secret, safe=""),  # a form body
        URL.build(query={"k": secret}).raw_query_string[2:],  # a query value, as yarl encodes it
        escape(secret),  # XML text
        escape(secret, {'"': "&quot;"}),  # XML attributes (lxml)
        escape(secret, {'"': "&quot;", "'": "&apos;"}),  # values in XML templates
        orjson.dumps(secret).decode()[1:-1],  # a string inside a JSON body
    }


class Masker:
    def __init__(self, secrets: list[str]) -> None:
        # Longest first, so a secret that contains another is masked whole.
        variants = {spelling for s in secrets if s for spelling in spellings(s)}
        self._secrets = sorted(variants, key=len, reverse=True)
        self._json_needles = [orjson.dumps(s)[1:-1] for s in self._secrets]
        raw = {s.encode() for s in self._secrets} | set(self._json_needles)
        self._raw_needles = sorted(raw, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            value = value.replace(secret, MASK)
        return value

    def raw_bytes(self, payload: bytes | None) -> bytes | None:
        """Mask secrets in a message's raw bytes (as text or JSON-escaped) before they are
        base64-encoded into an event, where json_bytes could no longer find them."""
        if payload is None:
            return None
        for needle in self._raw_needles:
            payload = payload.replace(needle, MASK.encode())
        return payload

    def json_bytes(self, payload: bytes) -> bytes:
        """Mask secrets inside serialised JSON (as they appear JSON-escaped)."""
        for needle in self._json_needles:
            payload = payload.replace(needle, MASK.encode())
        return payload
