"""Shared input handling: what counts as "no value", and text coercion."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import jinja2

P = ParamSpec("P")
R = TypeVar("R")


def is_blank(value: Any) -> bool:
    """None, a missing field or an empty string.

    A missing field in strict mode raises here, naming the field."""
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises UndefinedError; ChainableUndefined is ""
        return True
    return value is None or value == ""


def as_text(value: Any) -> str:
    """The value as text: ``str()`` of it, or "" for a blank value."""
    return "" if is_blank(value) else str(value)


def blank_is_none(func: Callable[P, R]) -> Callable[P, R | None]:
    """Make a filter return None for a blank input (None, missing, "") instead of calling it.

    A missing field passes through as the undefined value itself, so it still renders
    as "" in text and None in a lone expression, and ``| default(...)`` still applies."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | None:
        value = args[0]
        if is_blank(value):
            return value if isinstance(value, jinja2.Undefined) else None  # type: ignore[return-value]
        return func(*args, **kwargs)

    return wrapper
