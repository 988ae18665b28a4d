"""``int`` and ``float`` that treat a missing value as missing.

Jinja's own versions raise on an undefined value and turn junk into 0, so a
mapping like ``{{ response.match('ID: (\\d+)')[1] | int }}`` would either break
the step or write a made-up 0 onto the lead. Here blank, missing or unparseable
input gives ``default`` (None unless given).
"""

from __future__ import annotations

from typing import Any

from streams.filters._base import is_blank


def to_int(value: Any, default: Any = None, base: int = 10) -> Any:
    """Whole number from a number or numeric text (``"12"``, ``"12.0"``); else ``default``."""
    if is_blank(value) or isinstance(value, bool):
        return default
    try:
        return int(value.strip(), base) if isinstance(value, str) else int(value)
    except (TypeError, ValueError, OverflowError):
        pass
    try:  # "12.0", 12.7 -> 12, like Jinja's own int
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return default


def to_float(value: Any, default: Any = None) -> Any:
    """Decimal number from a number or numeric text (``"45.00"``); else ``default``."""
    if is_blank(value) or isinstance(value, bool):
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default
