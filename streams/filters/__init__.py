"""Template filters for common lead transformations, one module per family.

``FILTERS`` maps each filter's template name to its function; ``streams.templates``
registers them on every environment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streams.filters.conditionals import coalesce
from streams.filters.dates import age, date_filter
from streams.filters.encoding import b64decode, b64encode, hmac, md5, sha1, sha256, sha512, urlencode
from streams.filters.jsonpaths import jsonpath_filter, jsonpath_first
from streams.filters.numbers import to_float, to_int
from streams.filters.text import digits, regex_replace, regex_search

FILTERS: dict[str, Callable[..., Any]] = {
    # text
    "digits": digits,
    "regex_replace": regex_replace,
    "regex_search": regex_search,
    # dates
    "date": date_filter,
    "age": age,
    # encoding and hashing
    "b64encode": b64encode,
    "b64decode": b64decode,
    "md5": md5,
    "sha1": sha1,
    "sha256": sha256,
    "sha512": sha512,
    "hmac": hmac,
    "urlencode": urlencode,
    # JSON path
    "jsonpath": jsonpath_filter,
    "jsonpath_first": jsonpath_first,
    # numbers (replace Jinja's: missing stays missing)
    "int": to_int,
    "float": to_float,
    # conditionals
    "coalesce": coalesce,
}

__all__ = ["FILTERS"]
