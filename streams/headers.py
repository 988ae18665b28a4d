"""Header values from templates: text only, and never CR or LF (no header injection)."""

from __future__ import annotations

from typing import Any

from streams.http_types import RequestBuildError


def header_value(name: str, value: Any) -> str:
    text = "" if value is None else ("true" if value is True else "false" if value is False else str(value))
    if "\r" in text or "\n" in text or "\x00" in text:
        raise RequestBuildError(f"header {name!r} refused: its value contains CR, LF or NUL")
    return text
