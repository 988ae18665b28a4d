"""Header values from templates and lead data: text only, never CR, LF or NUL (no header
injection), and ASCII on the wire.

HTTP field values are ASCII in practice (RFC 9110 §5.5: other octets are "opaque data" that
strict servers refuse). A non-ASCII value is therefore

* encoded per RFC 8187 when it sits in a parameter of a header whose syntax defines extended
  parameters (``Content-Disposition: attachment; filename="Crème.pdf"`` is sent as
  ``filename*=utf-8''Cr%C3%A8me.pdf``, RFC 6266; ``Link: <…>; title="…"`` as ``title*=…``, RFC 8288);
* refused with ``RequestBuildError`` everywhere else (``X-Customer: José``), naming the header:
  encode it in the template instead (``{{ lead.name | urlencode }}`` or ``| b64encode``).
"""

from __future__ import annotations

import re
import string
from email.utils import encode_rfc2231
from typing import Any
from urllib.parse import quote

from streams.http_types import RequestBuildError

IDEMPOTENCY_HEADER = "Idempotency-Key"
# Printable ASCII but "%": what an idempotency key keeps as is when it must be percent-encoded.
_KEY_SAFE = "".join(c for c in string.printable if c.isprintable() and c not in "% ")
# Headers whose parameters may take the RFC 8187 ``name*=charset'lang'value`` form.
EXT_PARAMETER_HEADERS = frozenset({"content-disposition", "link"})
_FORBIDDEN = re.compile(r"[\r\n\x00]")
# `; name=value` or `; name="quoted value"` (RFC 9110 §5.6.6 parameters).
_PARAMETER = re.compile(
    r';\s*(?P<name>[!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*(?P<value>"(?:[^"\\]|\\.)*"|[^;]*)'
)


def header_value(name: str, value: Any) -> str:
    """The text to send as header ``name``: scalars as text, RFC 8187 parameters for non-ASCII
    where the header allows them; ``RequestBuildError`` naming the header otherwise."""
    text = "" if value is None else ("true" if value is True else "false" if value is False else str(value))
    if _FORBIDDEN.search(text):
        raise RequestBuildError(f"header {name!r} refused: its value contains CR, LF or NUL")
    if text.isascii():
        return text
    if name.lower() in EXT_PARAMETER_HEADERS:
        text = _PARAMETER.sub(_extended, text)
        if text.isascii():
            return text
    raise RequestBuildError(
        f"header {name!r} refused: its value has non-ASCII characters, which HTTP headers cannot carry "
        f"(encode it in the template, e.g. with urlencode or b64encode)"
    )


def idempotency_key(lead_id: str, step: str) -> str:
    """``<lead id>:<step>`` for the automatic ``Idempotency-Key`` header, checked like every
    other header (a CR, LF or NUL in the lead's id is refused, naming the header).

    The key is the engine's own header, so a non-ASCII id is not refused but sent
    percent-encoded as UTF-8 (``lead-é`` -> ``lead-%C3%A9``): such leads still run, and
    ASCII ids are sent exactly as before, so keys stay stable across versions."""
    key = f"{lead_id}:{step}"
    if _FORBIDDEN.search(key):
        raise RequestBuildError(
            f"header {IDEMPOTENCY_HEADER!r} refused: the lead's id contains CR, LF or NUL"
        )
    return header_value(IDEMPOTENCY_HEADER, key if key.isascii() else quote(key, safe=_KEY_SAFE))


def _extended(match: re.Match[str]) -> str:
    """One parameter, as ``name*=utf-8''…`` (RFC 8187) when its value is not ASCII."""
    value = match.group("value").strip()
    if value.isascii():
        return match.group(0)
    if value.startswith('"'):
        value = re.sub(r"\\(.)", r"\1", value[1:-1])  # the quoted-string's own escapes
    return f"; {match.group('name').rstrip('*')}*={encode_rfc2231(value, 'utf-8')}"
