"""``json:`` bodies: a structure of templates, serialised by orjson (never concatenated)."""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from streams.bodies import Body
from streams.templates import Context, compile_value, environment


class JsonBody(Body):
    content_type = "application/json"
    CONFIG: ClassVar[dict[str, Any]] = {"$ref": "#/$defs/template"}

    def __init__(self, raw: Any, strict: bool) -> None:
        self.value = compile_value(raw, environment(strict))

    def encode(self, context: Context) -> bytes:
        return orjson.dumps(self.value.render(context), default=str)
