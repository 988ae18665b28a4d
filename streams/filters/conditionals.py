"""Choosing among values."""

from __future__ import annotations

from typing import Any

from streams.filters._base import is_blank


def coalesce(value: Any, *alternatives: Any) -> Any:
    """The first of the value and the alternatives that is not None, missing or "":
    ``lead.mobile | coalesce(lead.phone, lead.work_phone)``. None when all are blank.
    Unlike ``default``, 0, False and [] count as values."""
    return next((candidate for candidate in (value, *alternatives) if not is_blank(candidate)), None)
