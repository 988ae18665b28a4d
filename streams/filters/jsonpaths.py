"""JSONPath filters over dicts and lists (a parsed JSON response, a lead), via python-jsonpath."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import jsonpath

from streams.filters._base import is_blank


@lru_cache(maxsize=512)
def _compile(expr: str) -> Any:
    try:
        return jsonpath.compile(expr)
    except jsonpath.JSONPathError as exc:
        # python-jsonpath's message spans several lines (with a caret); the first says it all.
        raise ValueError(f"jsonpath: invalid expression {expr!r}: {str(exc).splitlines()[0]}") from None


def jsonpath_filter(value: Any, expr: str) -> list[Any]:
    """Every match of the JSONPath ``expr``, in document order:
    ``response | jsonpath('$.results[*].score')``, or with a filter
    ``jsonpath('$.results[?@.status == "ok"].id')``. A string holding JSON (an object or
    array) is parsed first. None/missing gives []; an invalid expression or malformed
    JSON text raises ValueError."""
    if is_blank(value):
        return []
    try:
        return _compile(expr).findall(value)
    except jsonpath.JSONPathError as exc:
        raise ValueError(f"jsonpath: {expr!r}: {str(exc).splitlines()[0]}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"jsonpath: the value is text but not valid JSON ({exc})") from None


def jsonpath_first(value: Any, expr: str, default: Any = None) -> Any:
    """The first match of the JSONPath ``expr``, or ``default`` (None) when nothing
    matches: ``response | jsonpath_first('$.data.lead_id')``. Same input rules as ``jsonpath``."""
    matches = jsonpath_filter(value, expr)
    return matches[0] if matches else default
