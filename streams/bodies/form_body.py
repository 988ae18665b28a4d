"""``form:`` bodies: application/x-www-form-urlencoded; lists repeat the key."""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlencode

from streams.bodies import Body
from streams.templates import Context, compile_value, environment
from streams.urls import scalar_text


class FormBody(Body):
    content_type = "application/x-www-form-urlencoded"
    CONFIG: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": {"$ref": "#/$defs/template"},
    }

    def __init__(self, raw: Any, strict: bool) -> None:
        self.value = compile_value(raw, environment(strict))

    def encode(self, context: Context) -> bytes:
        pairs: list[tuple[str, str]] = []
        for name, value in self.value.render(context).items():
            items = value if isinstance(value, list) else [value]
            pairs.extend((name, scalar_text(item)) for item in items if item is not None)
        return urlencode(pairs).encode()
