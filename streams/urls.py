"""URL building: base URL + templated path + templated query, always encoded.

Values substituted into a path are percent-encoded as one segment (a ``/`` or
``?`` in a lead value cannot add a segment or start a query); query values are
encoded by yarl and merged with a query string already in the URL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
from yarl import URL

from streams.http_types import RequestBuildError


def encode_path_value(value: Any) -> str:
    """Jinja ``finalize`` hook for path templates: every ``{{ }}`` output is one segment."""
    if value is None:
        return ""
    text = quote(scalar_text(value), safe="")
    # "." and ".." would be dot segments that servers resolve (climbing a level).
    return text.replace(".", "%2E") if text in {".", ".."} else text


def join_url(base_url: str | None, path: str) -> URL:
    """``path`` if absolute, else ``base_url`` + ``path`` (keeping the base's own path)."""
    if "://" in path.split("?", 1)[0]:
        url = URL(path, encoded=True)
    elif base_url:
        url = URL(base_url.rstrip("/") + "/" + path.lstrip("/"), encoded=True)
    else:
        raise RequestBuildError(f"relative url {path!r} needs the integration's base_url")
    if not url.scheme or not url.host:
        raise RequestBuildError(f"not an absolute http(s) URL: {url}")
    if url.scheme not in {"http", "https"}:
        raise RequestBuildError(f"unsupported URL scheme {url.scheme!r}")
    return url


def add_query(url: URL, params: dict[str, Any]) -> URL:
    """Append parameters to the URL's existing query; None is left out, lists repeat the key."""
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        items = value if isinstance(value, list | tuple) else [value]
        pairs.extend((name, scalar_text(item)) for item in items if item is not None)
    return url.extend_query(pairs) if pairs else url


def scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)
