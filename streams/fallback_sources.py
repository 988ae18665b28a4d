"""The sources of a step's ``fallback:`` chain as a flow file writes them: one entry each,
told apart by its key (``url``, ``cache``, ``default``, ``retry_later``, ``skip``).

Each source owns its schema fragment and ``from_config(entry, read) -> Fallback``; the chain
itself is run by ``streams.step.answer``. Whether ``retry_later`` has a retry topic is the
flow's business (the loader checks it against ``topics.retry``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from streams.config import DURATION, RAISE, Reader, duration
from streams.flow import Fallback

ZERO_AGE = "a cache age of 0 would never serve an answer: give how old one may be (e.g. 1h)"


def _entry(key: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": [key], "properties": {key: value}}


class UrlSource:
    """The same request to another URL (its own parameters win over the step's)."""

    CONFIG: ClassVar[dict[str, Any]] = _entry("url", {"type": "string", "minLength": 1})

    @staticmethod
    def from_config(raw: Mapping[str, Any], read: Reader = RAISE) -> Fallback:
        return Fallback("url", url=read.compile(raw["url"], ("url",), url=True))


class CacheSource:
    """The last good answer to the same request, younger than the age given."""

    CONFIG: ClassVar[dict[str, Any]] = _entry("cache", DURATION)

    @staticmethod
    def from_config(raw: Mapping[str, Any], read: Reader = RAISE) -> Fallback:
        age = duration(read, raw["cache"], ("cache",), ZERO_AGE)
        return Fallback("cache") if age is None else Fallback("cache", max_age=age)


class DefaultSource:
    """Fields written onto the lead, outcome success (templates, never strict)."""

    CONFIG: ClassVar[dict[str, Any]] = _entry("default", {"type": "object"})

    @staticmethod
    def from_config(raw: Mapping[str, Any], read: Reader = RAISE) -> Fallback:
        fields = {
            key: read.compile(value, ("default", key), strict=False) for key, value in raw["default"].items()
        }
        return Fallback("default", default=fields)


class RetryLaterSource:
    """The delayed retry topics (the flow needs ``topics.retry``)."""

    CONFIG: ClassVar[dict[str, Any]] = _entry("retry_later", {"const": True})

    @staticmethod
    def from_config(raw: Mapping[str, Any], read: Reader = RAISE) -> Fallback:
        return Fallback("retry_later")


class SkipSource:
    """The step ends ``skip``, with the author's note (if any) as its reason."""

    CONFIG: ClassVar[dict[str, Any]] = _entry(
        "skip",
        {
            "description": "true, or {note: TEXT}: the step ends skip with TEXT as its reason",
            "oneOf": [
                {"const": True},
                _entry("note", {"type": "string", "minLength": 1}),
            ],
        },
    )

    @staticmethod
    def from_config(raw: Mapping[str, Any], read: Reader = RAISE) -> Fallback:
        return Fallback("skip", note=raw["skip"].get("note") if isinstance(raw["skip"], dict) else None)
