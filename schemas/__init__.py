"""JSON Schemas (data only): the flow file, the input lead and the output events."""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any


@cache
def load(name: str) -> dict[str, Any]:
    """The schema ``schemas/<name>.schema.json`` as a dict."""
    return json.loads(files(__name__).joinpath(f"{name}.schema.json").read_text())
