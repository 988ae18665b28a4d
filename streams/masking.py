"""Secrets never leave the engine in clear: replace them wherever text or event bytes go out.

Secrets are the flow's settings (``Masker(flow.secrets)``) and, learned at runtime by every
``Masker`` in the process, the values the engine derives from them or receives as credentials:

* what an auth scheme holds or produces: API keys, Basic credentials, bearer and rotated
  tokens, HMAC keys, OAuth2 client secrets and every token a token endpoint issues
  (``streams.auth`` calls ``learn``, and ``learn_issued`` for what a token endpoint issues);
* the output of a template expression that reads ``settings`` and nothing else, once it applies
  a filter or an operator (``{{ settings.key | b64encode }}``; ``streams.templates``).

Token-endpoint fields (``access_token``, ``refresh_token``, ``id_token``) are masked by their
name as well, in JSON and form text: a body can be logged before its token is learned.
"""

from __future__ import annotations

import re
import threading
from typing import NamedTuple
from urllib.parse import quote, quote_plus
from xml.sax.saxutils import escape

import orjson
from yarl import URL

MASK = "***"
# Learned values shorter than this are left alone, as short settings are (streams.flow.MIN_SECRET):
# masking them would rewrite innocent lead data.
MIN_LEARNED = 6
# Issued tokens kept (learn_issued): they are re-issued for as long as a worker runs; old ones
# expired long ago. What `learn` registers is kept for good.
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
    """The process's learned secrets, with a version that changes when they do, so each Masker
    rebuilds its needles only then.

    Two kinds: what is learned once and stays a secret for the life of the process (credentials
    an auth scheme is built with, values computed from settings) is kept for good; tokens an
    endpoint issues are re-issued for as long as a worker runs, so only the last ``capacity`` of
    them are kept (old ones expired long ago). Keeping the two apart is what stops a run of
    token refreshes from pushing an API key out of the masker."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._kept: dict[str, None] = {}  # insertion-ordered sets
        self._issued: dict[str, None] = {}
        self._lock = threading.Lock()  # log records are masked on whichever thread logs
        self.state: tuple[int, tuple[str, ...]] = (0, ())  # (version, values), swapped whole

    def keep(self, value: str) -> None:
        if len(value) < MIN_LEARNED or value in self._kept:
            return  # the common case (templates learn on every render): no lock, no new version
        with self._lock:
            self._kept[value] = None
            self._issued.pop(value, None)
            self._publish()

    def issue(self, value: str) -> None:
        if len(value) < MIN_LEARNED or value in self._kept:
            return
        with self._lock:
            if value in self._issued:
                # Re-issued: the newest again, so eviction takes older ones first. The set is
                # unchanged, so no new version (no Masker rebuilds).
                self._issued[value] = self._issued.pop(value)
                return
            self._issued[value] = None
            while len(self._issued) > self._capacity:
                del self._issued[next(iter(self._issued))]
            self._publish()

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()
            self._issued.clear()
            self._publish()

    def _publish(self) -> None:
        """Under the lock: one new (version, values) tuple, so a reader never mixes two states."""
        self.state = (self.state[0] + 1, (*self._kept, *self._issued))


_learned = _Learned(LEARNED_CAPACITY)


def learn(*values: object) -> None:
    """Register values as secrets for every Masker in this process, for good: credentials an auth
    scheme is built with, values derived from settings (None and short ones skipped)."""
    for value in values:
        if isinstance(value, str):
            _learned.keep(value)


def learn_issued(*values: object) -> None:
    """Register tokens an endpoint issued (OAuth2 access/refresh/id tokens): masked like
    ``learn``'s values, but only the latest ``LEARNED_CAPACITY`` are kept."""
    for value in values:
        if isinstance(value, str):
            _learned.issue(value)


def forget_learned() -> None:
    """Drop the learned secrets (tests)."""
    _learned.clear()


class _Needles(NamedTuple):
    """What a Masker searches for, built from one learned state. Replaced whole, never
    updated in place: the log record factory runs on Faust's consumer thread as well as the
    main one, and a reader must never see a new version with old lists."""

    version: int
    texts: list[str]  # longest first, so a secret that contains another is masked whole
    json: list[bytes]
    raw: list[bytes]


class Masker:
    def __init__(self, secrets: list[str]) -> None:
        self._static = [s for s in secrets if s]
        self._needles = _Needles(-1, [], [], [])
        self._current()

    def _current(self) -> _Needles:
        """The needles for the learned secrets as they are now (rebuilt only when they changed)."""
        needles = self._needles
        version, learned = _learned.state
        if version == needles.version:
            return needles
        variants = {spelling for s in (*self._static, *learned) for spelling in spellings(s)}
        secrets = sorted(variants, key=len, reverse=True)
        json_needles = [orjson.dumps(s)[1:-1] for s in secrets]
        raw = {s.encode() for s in secrets} | set(json_needles)
        needles = _Needles(version, secrets, json_needles, sorted(raw, key=len, reverse=True))
        self._needles = needles  # one assignment: other threads see the old tuple or this one
        return needles

    def text(self, value: str) -> str:
        needles = self._current()
        if "_token" in value:
            value = _TOKEN_TEXT.sub(lambda m: m.group("key") + MASK, value)
        for secret in needles.texts:
            value = value.replace(secret, MASK)
        return value

    def raw_bytes(self, payload: bytes | None) -> bytes | None:
        """Mask secrets in a message's raw bytes (as text or JSON-escaped) before they are
        base64-encoded into an event, where json_bytes could no longer find them."""
        if payload is None:
            return None
        needles = self._current()
        payload = _mask_token_fields(payload)
        for needle in needles.raw:
            payload = payload.replace(needle, MASK.encode())
        return payload

    def json_bytes(self, payload: bytes) -> bytes:
        """Mask secrets inside serialised JSON (as they appear JSON-escaped). The fast path
        replaces bytes; a secret that appeared as a bare JSON number (a numeric setting sent
        through ``| int``) would leave ``"n":***``, so a masked document that no longer parses
        is masked again value by value, the number becoming the string ``"***"``."""
        needles = self._current()
        original = payload
        payload = _mask_token_fields(payload)
        for needle in needles.json:
            payload = payload.replace(needle, MASK.encode())
        if payload is original or _parses(payload):  # nothing replaced: nothing to check
            return payload
        return orjson.dumps(self._masked_value(orjson.loads(original)))

    def _masked_value(self, value: object) -> object:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k): self._masked_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._masked_value(item) for item in value]
        if isinstance(value, int | float) and not isinstance(value, bool):
            masked = self.text(str(value))
            return value if masked == str(value) else masked
        return value


def _parses(payload: bytes) -> bool:
    try:
        orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    return True


def _mask_token_fields(payload: bytes) -> bytes:
    if b"_token" not in payload:
        return payload
    return _TOKEN_BYTES.sub(lambda m: m.group("key") + MASK.encode(), payload)
