"""Secrets never leave the engine in clear: replace them wherever text or event bytes go out.

Secrets are the flow's settings (``Masker(flow.secrets)``) and, learned at runtime by every
``Masker`` in the process, the values the engine derives from them or receives as credentials:

* what an auth scheme holds or produces: API keys, Basic credentials, bearer and rotated
  tokens, HMAC keys, OAuth2 client secrets and every token a token endpoint issues
  (``streams.auth`` calls ``learn``);
* the output of a template expression that reads ``settings`` and nothing else, once it applies
  a filter or an operator (``{{ settings.key | b64encode }}``; ``streams.templates``).

Token-endpoint fields (``access_token``, ``refresh_token``, ``id_token``) are masked by their
name as well, in JSON and form text: a body can be logged before its token is learned.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import quote, quote_plus
from xml.sax.saxutils import escape

import orjson
from yarl import URL

MASK = "***"
# Learned values shorter than this are left alone, as short settings are (streams.flow.MIN_SECRET):
# masking them would rewrite innocent lead data.
MIN_LEARNED = 6
# Learned values kept: tokens are re-issued for as long as a worker runs; old ones expired long ago.
LEARNED_CAPACITY = 256
TOKEN_FIELDS = ("access_token", "refresh_token", "id_token")
# `"access_token": "…"`, the same JSON-escaped inside an event (`\"access_token\":\"…\"`), and
# `access_token=…` in a form body: the value runs to the next quote, backslash, & or space.
_TOKEN_FIELD = r'(?P<key>(?:\\*")?\b(?:access_token|refresh_token|id_token)(?:\\*")?\s*[:=]\s*(?:\\*")?)'
_TOKEN_TEXT = re.compile(_TOKEN_FIELD + r'[^"\\&\s,}]+')
_TOKEN_BYTES = re.compile(_TOKEN_FIELD.encode() + rb'[^"\\&\s,}]+')


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


class _Learned:
    """The process's learned secrets: a bounded, insertion-ordered set with a version that
    changes when it does, so each Masker rebuilds its needles only then."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._values: dict[str, None] = {}
        self._lock = threading.Lock()  # log records are masked on whichever thread logs
        self.state: tuple[int, tuple[str, ...]] = (0, ())  # (version, values), swapped whole

    def add(self, value: str) -> None:
        if len(value) < MIN_LEARNED or value in self._values:
            return  # the common case, per request: no lock, no new version
        with self._lock:
            self._values[value] = None
            while len(self._values) > self._capacity:
                del self._values[next(iter(self._values))]
            self.state = (self.state[0] + 1, tuple(self._values))

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self.state = (self.state[0] + 1, ())


_learned = _Learned(LEARNED_CAPACITY)


def learn(*values: object) -> None:
    """Register values as secrets for every Masker in this process (None and short ones skipped)."""
    for value in values:
        if isinstance(value, str):
            _learned.add(value)


def forget_learned() -> None:
    """Drop the learned secrets (tests)."""
    _learned.clear()


class Masker:
    def __init__(self, secrets: list[str]) -> None:
        self._static = [s for s in secrets if s]
        self._version = -1
        self._refresh()

    def _refresh(self) -> None:
        version, learned = _learned.state
        if version == self._version:
            return
        # Longest first, so a secret that contains another is masked whole.
        variants = {spelling for s in (*self._static, *learned) for spelling in spellings(s)}
        secrets = sorted(variants, key=len, reverse=True)
        json_needles = [orjson.dumps(s)[1:-1] for s in secrets]
        raw = {s.encode() for s in secrets} | set(json_needles)
        self._secrets, self._json_needles = secrets, json_needles
        self._raw_needles = sorted(raw, key=len, reverse=True)
        self._version = version

    def text(self, value: str) -> str:
        self._refresh()
        if "_token" in value:
            value = _TOKEN_TEXT.sub(lambda m: m.group("key") + MASK, value)
        for secret in self._secrets:
            value = value.replace(secret, MASK)
        return value

    def raw_bytes(self, payload: bytes | None) -> bytes | None:
        """Mask secrets in a message's raw bytes (as text or JSON-escaped) before they are
        base64-encoded into an event, where json_bytes could no longer find them."""
        if payload is None:
            return None
        self._refresh()
        payload = _mask_token_fields(payload)
        for needle in self._raw_needles:
            payload = payload.replace(needle, MASK.encode())
        return payload

    def json_bytes(self, payload: bytes) -> bytes:
        """Mask secrets inside serialised JSON (as they appear JSON-escaped)."""
        self._refresh()
        payload = _mask_token_fields(payload)
        for needle in self._json_needles:
            payload = payload.replace(needle, MASK.encode())
        return payload


def _mask_token_fields(payload: bytes) -> bytes:
    if b"_token" not in payload:
        return payload
    return _TOKEN_BYTES.sub(lambda m: m.group("key") + MASK.encode(), payload)
