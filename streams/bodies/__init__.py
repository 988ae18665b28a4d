"""Request body formats: one module each, all sharing the ``Body`` interface."""

from __future__ import annotations

from typing import Any, Protocol

from streams.templates import Context


class Body(Protocol):
    content_type: str

    def encode(self, context: Context) -> bytes: ...


def build_body(kind: str, raw: Any, strict: bool) -> Body:
    from streams.bodies.form_body import FormBody
    from streams.bodies.json_body import JsonBody
    from streams.bodies.text_body import TextBody

    formats: dict[str, type[JsonBody] | type[FormBody] | type[TextBody]] = {
        "json": JsonBody,
        "form": FormBody,
        "text": TextBody,
    }
    return formats[kind](raw, strict)


BODY_KINDS = ("json", "form", "text")
