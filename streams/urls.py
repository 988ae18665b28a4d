"""URL building: base URL + templated path + templated query, always encoded.

Values substituted into a path are percent-encoded as one segment (a ``/`` or
``?`` in a lead value cannot add a segment or start a query); a value that would
leave the segment empty or make it a dot segment is refused. Query values are
encoded by yarl; a ``query:`` key replaces the same key already in the URL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote_plus

import jinja2
import orjson
from yarl import URL

from streams.http_types import RequestBuildError


class PathValueError(ValueError):
    """A path value that cannot be one segment; the template's render error names the template."""


def encode_path_value(value: Any) -> str:
    """Jinja ``finalize`` hook for path templates: every ``{{ }}`` output is one segment.

    Missing/empty values would leave ``//`` (a different resource on most servers), and
    ``.``/``..`` are dot segments: servers resolve them even percent-encoded (RFC 3986 §6.2.2.2
    normalises ``%2E`` back to ``.``), so both are refused rather than sent."""
    if value is None or isinstance(value, jinja2.Undefined):
        raise PathValueError("a path value is missing (it would leave an empty segment '//')")
    text = scalar_text(value)
    if text == "":
        raise PathValueError("a path value is empty (it would leave an empty segment '//')")
    if text in {".", ".."}:
        raise PathValueError(f"a path value is {text!r}, a dot segment that would change the path")
    return quote(text, safe="")


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


def add_query(url: URL, params: dict[str, Any], *, url_wins: bool = False) -> URL:
    """The URL with ``params`` in its query: None is left out, lists repeat the key.

    A key in ``params`` replaces the same key already in the URL (``?source=web`` plus
    ``query: {source: 123}`` sends ``source=123`` once). With ``url_wins`` (a fallback
    ``url:``, which names its own parameters, e.g. its own key) the URL's keys stay and
    only the other ``params`` are added. The URL's own query keeps its exact spelling.
    """
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        items = value if isinstance(value, list | tuple) else [value]
        pairs.extend((name, scalar_text(item)) for item in items if item is not None)
    if not pairs:
        return url
    existing = [part for part in url.raw_query_string.split("&") if part]
    present = {unquote_plus(part.split("=", 1)[0]) for part in existing}
    if url_wins:
        pairs = [(name, value) for name, value in pairs if name not in present]
    else:
        replaced = {name for name, _ in pairs}
        existing = [part for part in existing if unquote_plus(part.split("=", 1)[0]) not in replaced]
    if not pairs:
        return url
    query = "&".join([*existing, URL.build(query=pairs).raw_query_string])
    head, hash_, fragment = str(url).partition("#")  # str() of a URL is its encoded form
    return URL(f"{head.split('?', 1)[0]}?{query}{hash_}{fragment}", encoded=True)


def scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)
