"""Request body formats: one module each, all sharing the ``Body`` base class.

Each format owns its spec: ``CONFIG`` (the JSON-schema fragment of its ``request.<kind>`` key)
and ``from_config(raw, read)``; ``streams.components.BODY_FORMATS`` registers them by kind.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import jinja2

from streams.config import RAISE, Keys, Reader
from streams.templates import Context, environment


class Body:
    """A request body. ``content_type`` is static; bodies whose type or headers depend on the
    lead (SOAP 1.2 actions, SOAPAction) override ``content_type_for`` and ``extra_headers``,
    which the request builder calls for every body."""

    content_type: str
    CONFIG: ClassVar[dict[str, Any]] = {}

    def __init__(self, raw: Any, strict: bool) -> None:
        raise NotImplementedError

    @classmethod
    def from_config(cls, raw: Any, read: Reader = RAISE) -> Body:
        """The body for ``raw`` (ValueError or a template syntax error when it is wrong)."""
        return cls(raw, read.strict)

    def encode(self, context: Context) -> bytes:
        raise NotImplementedError

    def content_type_for(self, context: Context) -> str:
        """The Content-Type for this lead; by default the static ``content_type``."""
        return self.content_type

    def extra_headers(self, context: Context) -> dict[str, str]:
        """Headers the format itself adds for this lead (SOAP 1.1's SOAPAction); none by default."""
        return {}


BODY_KINDS = ("json", "form", "text", "xml", "soap")


def template_problems(
    raw: Any, path: Keys, strict: bool, first: jinja2.TemplateSyntaxError
) -> list[tuple[Keys, str]]:
    """Every malformed template of a body, each at its own key (a body's constructor stops at
    the first and knows no paths); ``first`` at the body itself when none is found again."""
    env = environment(strict)
    found: list[tuple[Keys, str]] = []
    for where, text in _strings(raw, path):
        try:
            env.parse(text)
        except jinja2.TemplateSyntaxError as exc:
            found.append((where, f"template syntax: {exc.message}"))
    return found or [(path, f"template syntax: {first.message}")]


def _strings(raw: Any, path: Keys) -> Iterator[tuple[Keys, str]]:
    """Every string in a YAML value (keys included: bodies may template them), with its path."""
    if isinstance(raw, str):
        yield path, raw
    elif isinstance(raw, dict):
        for key, value in raw.items():
            if isinstance(key, str):
                yield (*path, key), key
            yield from _strings(value, (*path, key))
    elif isinstance(raw, list):
        for index, item in enumerate(raw):
            yield from _strings(item, (*path, index))
