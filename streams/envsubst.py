"""``${NAME}`` and ``${NAME:-default}`` in flow-file strings, read from the environment."""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Iterator, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

import schemas
from streams.yaml_source import Path

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TYPED = {"true": True, "false": False}
_INTEGER = re.compile(r"[+-]?[0-9]+")
# A schema that finds one coerced value wrong may only then see the next (nested oneOf).
_MAX_TYPING_PASSES = 5


class MissingVariable(Exception):
    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        # Most unset variables are secrets or addresses, where a default in the file would be
        # wrong: the fix is to set the variable where the flow runs.
        super().__init__(f"environment variable {name} is not set: export it")


def substitute(
    value: Any, env: Mapping[str, str], path: Path = (), schema: str | None = "flow"
) -> tuple[Any, list[MissingVariable]]:
    """Replace references in every string of ``value``; list the unset ones.

    A string that is exactly one reference becomes a number or boolean where ``schema``
    (``schemas/<schema>.schema.json``) wants one and the text parses as one
    (``concurrency: ${CONCURRENCY:-100}`` is 100); everywhere else it stays text, so ids and
    zip codes that look numeric are not changed. Settings are never typed."""
    missing: list[MissingVariable] = []
    whole: dict[Path, str] = {}  # exactly-one-reference strings outside settings, substituted

    def walk(node: Any, where: Path) -> Any:
        if isinstance(node, str):
            text = _REFERENCE.sub(lambda m: lookup(m, where), node)
            if where[:1] != ("settings",) and _REFERENCE.fullmatch(node.strip()):
                # `allow_loopback: ${ALLOW:-false}` is a boolean wherever it is (as before).
                word = text.strip().lower()
                if word in _TYPED:
                    return _TYPED[word]
                whole[where] = text
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

    result = walk(value, path)
    if schema is not None and whole:
        result = _typed(result, path, whole, _schema(schema))
    return result, missing


def _schema(name: str) -> dict[str, Any]:
    """``schemas/<name>.schema.json``; the flow's as assembled from its components."""
    if name == "flow":
        from streams.flow_schema import flow_schema  # (it imports every component)

        return flow_schema()
    return schemas.load(name)


def _typed(data: Any, root: Path, whole: dict[Path, str], schema: dict[str, Any]) -> Any:
    """Numbers and booleans for the ``whole`` strings the schema refuses for want of one."""
    validator = Draft202012Validator(schema)
    for _ in range(_MAX_TYPING_PASSES):
        changed = False
        for error in _all_errors(validator.iter_errors(data)):
            where = (*root, *error.absolute_path)
            if error.validator != "type" or where not in whole or not isinstance(error.instance, str):
                continue
            wanted = (
                error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
            )
            typed = _parse(whole[where], wanted)
            if typed is not None:
                data = _replace(data, tuple(error.absolute_path), typed)
                del whole[where]
                changed = True
        if not changed:
            break
    return data


def _all_errors(errors: Any) -> Iterator[ValidationError]:
    """Every error, with those inside oneOf/anyOf branches."""
    for error in errors:
        yield error
        yield from _all_errors(error.context or ())


def _parse(text: str, wanted: list[str]) -> int | float | bool | None:
    word = text.strip()
    if ("integer" in wanted or "number" in wanted) and _INTEGER.fullmatch(word):
        return int(word)
    if "number" in wanted:
        try:
            number = float(word)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None  # booleans were typed while substituting


def _replace(data: Any, path: Path, value: Any) -> Any:
    if not path:
        return value
    head, *rest = path
    data[head] = _replace(data[head], tuple(rest), value)
    return data


_ASSIGNMENT = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)")


def read_env_file(text: str) -> tuple[dict[str, str], list[tuple[int, str]]]:
    """``NAME=value`` lines (``export`` allowed, ``#`` comments, shell quoting) as a dict, and
    the (line, problem) of lines that are not. The docker/compose env-file subset; python-dotenv
    is not a dependency, and shlex does the quoting."""
    values: dict[str, str] = {}
    problems: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ASSIGNMENT.fullmatch(stripped)
        if match is None:
            problems.append((number, "not NAME=value"))
            continue
        try:
            words = shlex.split(match.group(2), comments=True)
        except ValueError as exc:  # an unclosed quote
            problems.append((number, f"{match.group(1)}: {exc}"))
            continue
        values[match.group(1)] = " ".join(words)
    return values, problems
