"""Template filters for common lead transformations."""

from __future__ import annotations

import re
from typing import Any


def digits(value: Any) -> str:
    """Keep only the digits: ``(555) 123-4567`` -> ``5551234567``."""
    return re.sub(r"\D", "", "" if value is None else str(value))


def regex_replace(value: Any, pattern: str, replacement: str = "") -> str:
    return re.sub(pattern, replacement, "" if value is None else str(value))


FILTERS = {"digits": digits, "regex_replace": regex_replace}
