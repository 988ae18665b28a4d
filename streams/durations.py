"""Durations written in flow files: ``200ms``, ``2s``, ``5m``, ``1h`` or a number of seconds."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: str | float | int) -> float:
    """Seconds for a duration; raises ValueError with a readable message."""
    if isinstance(value, bool):
        raise ValueError(f"durations look like 200ms, 2s, 5m (got {value!r})")
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"durations look like 200ms, 2s, 5m (got {value!r})")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]
