"""``text:`` bodies: a template rendered to UTF-8 text."""

from __future__ import annotations

from typing import Any, ClassVar

from streams.bodies import Body
from streams.templates import Context, compile_value, environment


class TextBody(Body):
    content_type = "text/plain; charset=utf-8"
    CONFIG: ClassVar[dict[str, Any]] = {"type": "string"}

    def __init__(self, raw: Any, strict: bool) -> None:
        self.value = compile_value(str(raw), environment(strict))

    def encode(self, context: Context) -> bytes:
        rendered = self.value.render(context)
        return ("" if rendered is None else str(rendered)).encode()
