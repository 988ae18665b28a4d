"""Request bodies sent compressed (``request.compress``): gzip, deflate (zlib, as HTTP means
it) or br (Brotli, Google's maintained ``Brotli`` wheel — aiohttp uses the same package to read
br answers). Output is deterministic (gzip without a timestamp), so a replayed lead sends the
same bytes and the response cache's fingerprint still matches."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable

import brotli

COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda body: gzip.compress(body, mtime=0),
    "deflate": zlib.compress,
    "br": brotli.compress,
}
DECOMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.decompress,
    "deflate": zlib.decompress,
    "br": brotli.decompress,
}


def compress(body: bytes, encoding: str) -> bytes:
    return COMPRESSORS[encoding](body)


def readable(body: bytes, encoding: str | None) -> tuple[bytes, str | None]:
    """The body as it was before ``compress`` and the encoding it was sent with (None when it
    was sent as it is, or cannot be read back)."""
    undo = DECOMPRESSORS.get((encoding or "").strip().lower())
    if undo is None:
        return body, None
    try:
        return undo(body), encoding
    except (OSError, zlib.error, brotli.error):
        return body, None
