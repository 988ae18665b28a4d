"""JSON responses: the parsed body; an empty body is ``None``."""

from __future__ import annotations

from typing import Any

import orjson


def parse_json(body: bytes) -> Any:
    if not body.strip():
        return None
    return orjson.loads(body)
