"""The flow file's JSON Schema, assembled from the components' own fragments.

``schemas/flow.skeleton.json`` holds what no component owns (top level, steps, requests,
responses, templates, durations) with ``{"x-component": NAME}`` where a component's fragment
goes and ``"x-components": KIND`` where a kind's keys join a mapping's properties (each body
format is a key of ``request``). ``schemas/flow.schema.json`` is the assembled result, checked
in for editors (``# yaml-language-server: $schema=…``); a test holds it equal to this, and
``python -m streams.schema_file`` rewrites it.
"""

from __future__ import annotations

import itertools
import json
from functools import cache
from importlib.resources import files
from typing import Any

from streams import components as registry
from streams.config import schema_fragment
from streams.responses import FORMAT_SCHEMA

ONE_BODY = "a request has one body: json, form, text, xml or soap"


def _fragments() -> dict[str, Any]:
    """What each ``x-component`` marker becomes."""
    pairs = itertools.combinations(registry.BODY_FORMATS, 2)
    return {
        "auth": {
            "type": "object",
            "required": ["type"],
            "oneOf": [schema_fragment(scheme) for scheme in registry.AUTH_SCHEMES.values()],
        },
        "fallback": {
            "type": "array",
            "minItems": 1,
            "items": {"oneOf": [schema_fragment(source) for source in registry.FALLBACK_SOURCES.values()]},
        },
        "one_body": {"anyOf": [{"required": list(pair)} for pair in pairs], "x-problem": ONE_BODY},
        "response_format": FORMAT_SCHEMA,
        "retry": schema_fragment(registry.RETRY),
        "circuit": schema_fragment(registry.CIRCUIT),
        "cache": schema_fragment(registry.CACHE),
        "batch": schema_fragment(registry.BATCH),
        "notify": schema_fragment(registry.NOTIFY),
        "delayed_retry": schema_fragment(registry.DELAYED_RETRY),
    }


def _properties() -> dict[str, dict[str, Any]]:
    """What each ``x-components`` marker adds to the mapping's properties."""
    return {
        "body": {kind: schema_fragment(body) for kind, body in registry.BODY_FORMATS.items()},
        "rate_limit": schema_fragment(registry.RATE_LIMIT)["properties"],
    }


@cache
def flow_schema() -> dict[str, Any]:
    """The flow file's schema (one dict per process: treat it as read-only)."""
    skeleton = json.loads(files("schemas").joinpath("flow.skeleton.json").read_text())
    return _fill(skeleton, _fragments(), _properties())


def _fill(node: Any, fragments: dict[str, Any], properties: dict[str, dict[str, Any]]) -> Any:
    if isinstance(node, list):
        return [_fill(item, fragments, properties) for item in node]
    if not isinstance(node, dict):
        return node
    if "x-component" in node:
        return fragments[node["x-component"]]
    filled: dict[str, Any] = {}
    for key, value in node.items():
        if key == "x-components":
            filled.update(properties[value])
        else:
            filled[key] = _fill(value, fragments, properties)
    return filled
