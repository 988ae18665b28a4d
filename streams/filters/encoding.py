"""Encoding and hashing filters: base64, digests, HMAC signatures, URL percent-encoding.

Text is encoded as UTF-8; a non-string value is hashed or encoded as its ``str()``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac as hmac_lib
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote
from urllib.parse import urlencode as query_string

from streams.filters._base import as_text, blank_is_none

_ENCODINGS: dict[str, Callable[[bytes], str]] = {
    "hex": bytes.hex,
    "base64": lambda raw: base64.b64encode(raw).decode("ascii"),
}


@blank_is_none
def b64encode(value: Any) -> str:
    """Base64 of the text (standard alphabet, padded): ``ann:secret`` -> ``YW5uOnNlY3JldA==``.
    None/missing/"" gives None."""
    return base64.b64encode(str(value).encode()).decode("ascii")


@blank_is_none
def b64decode(value: Any) -> str:
    """Decode base64 (standard alphabet; missing padding and whitespace tolerated) to UTF-8 text.
    None/missing/"" gives None; invalid base64 or non-UTF-8 content raises ValueError."""
    text = str(value)
    compact = "".join(text.split())  # line breaks and spaces are not data
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"b64decode: {_preview(text)} is not base64 of UTF-8 text ({exc})") from None


def _digest_filter(algorithm: str) -> Callable[[Any], str | None]:
    """A filter giving the hex ``algorithm`` digest of the text (one per hash: md5, sha1, …)."""

    @blank_is_none
    def digest(value: Any) -> str:
        return hashlib.new(algorithm, str(value).encode()).hexdigest()

    digest.__name__ = digest.__qualname__ = algorithm
    digest.__doc__ = (
        f"Hex {algorithm.upper()} digest of the UTF-8 text: ``lead.email | lower | {algorithm}``. "
        'None/missing/"" gives None (no hash of an empty value).'
    )
    return digest


md5 = _digest_filter("md5")
sha1 = _digest_filter("sha1")
sha256 = _digest_filter("sha256")
sha512 = _digest_filter("sha512")


@blank_is_none
def hmac(value: Any, key: Any, algorithm: str = "sha256", encoding: str = "hex") -> str:
    """HMAC signature of the text with ``key`` (both UTF-8):
    ``body_text | hmac(secrets.webhook_key)``, or ``hmac(key, 'sha1', 'base64')``.

    ``algorithm`` is any hashlib name (sha256, sha1, sha512, md5, …); ``encoding`` is
    ``hex`` or ``base64``. None/missing/"" value gives None; a blank key raises ValueError."""
    if not as_text(key):
        raise ValueError("hmac: the key is empty or missing")
    if algorithm not in hashlib.algorithms_available:
        raise ValueError(f"hmac: unknown algorithm {algorithm!r} (e.g. sha256, sha1, sha512, md5)")
    if encoding not in _ENCODINGS:
        raise ValueError(f"hmac: unknown encoding {encoding!r} (use {' or '.join(_ENCODINGS)})")
    signature = hmac_lib.new(str(key).encode(), str(value).encode(), algorithm).digest()
    return _ENCODINGS[encoding](signature)


def urlencode(value: Any) -> str:
    """Percent-encode text for one URL component: every reserved character, ``/``
    included, is escaped (``a b/c&d`` -> ``a%20b%2Fc%26d``). A mapping (or list of pairs)
    becomes a query string ``k=v&k2=v2``. None or missing gives "".

    Replaces Jinja's ``urlencode``, which leaves ``/`` alone. Not needed in a step's
    ``url`` path or ``query`` values: those are encoded already (it would double-encode)."""
    if isinstance(value, Mapping | list | tuple):
        try:
            return query_string(value, quote_via=quote, safe="")
        except (TypeError, ValueError):
            raise ValueError("urlencode: a list must hold (name, value) pairs") from None
    return quote(as_text(value), safe="")


def _preview(text: str, limit: int = 40) -> str:
    """The value for an error message, cut short."""
    return repr(text if len(text) <= limit else text[:limit] + "…")
