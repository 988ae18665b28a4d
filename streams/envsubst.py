"""``${NAME}`` and ``${NAME:-default}`` in flow-file strings, read from the environment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from streams.yaml_source import Path

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TYPED = {"true": True, "false": False}


class MissingVariable(Exception):
    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        super().__init__(f"environment variable {name} is not set (use ${{{name}:-default}})")


def substitute(value: Any, env: Mapping[str, str], path: Path = ()) -> tuple[Any, list[MissingVariable]]:
    """Replace references in every string of ``value``; list the unset ones."""
    missing: list[MissingVariable] = []

    def walk(node: Any, where: Path) -> Any:
        if isinstance(node, str):
            text = _REFERENCE.sub(lambda m: lookup(m, where), node)
            # Outside settings, a value that is exactly one reference and reads true or
            # false is a boolean (`allow_loopback: ${ALLOW:-false}`). Nothing else is
            # typed: ids, keys and zip codes that look numeric must stay text.
            if where[:1] != ("settings",) and _REFERENCE.fullmatch(node.strip()):
                word = text.strip().lower()
                if word in _TYPED:
                    return _TYPED[word]
            return text
        if isinstance(node, dict):
            return {key: walk(item, (*where, key)) for key, item in node.items()}
        if isinstance(node, list):
            return [walk(item, (*where, index)) for index, item in enumerate(node)]
        return node

    def lookup(match: re.Match[str], where: Path) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        missing.append(MissingVariable(where, name))
        return ""

    return walk(value, path), missing
