"""JSON Schema errors in words a flow author can act on.

jsonschema's own messages describe the schema (``'api_key' was expected``, ``is not valid
under any of the given schemas``, a raw regex). Here each error is walked in jsonschema's
error tree: a ``oneOf``/``anyOf`` is resolved to the branch the value meant — by its
discriminating key (``type: oauth2`` -> the oauth2 branch), by the keys that only one
branch requires (``skip:`` in a fallback entry), or by its JSON type — and only that
branch's errors are explained. Schemas may carry ``x-problem``: the sentence to say when a
value does not fit (``durations look like 200ms, 2s, 5m``), instead of the schema dump.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

Path = tuple[str | int, ...]

# Errors an ``x-problem`` sentence answers: a value of the wrong form. A missing or unknown
# key inside such a value still gets its own message.
_HINTED = frozenset({"pattern", "not", "type", "minLength", "exclusiveMinimum", "minimum"})
_JSON_TYPES = {
    "string": "text",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping (key: value)",
    "array": "a list",
    "null": "null",
}


def schema_problems(data: Any, schema: dict[str, Any]) -> list[tuple[Path, str]]:
    """Every problem of ``data`` under ``schema`` as (path, message), in document order of
    the errors, without repeats."""
    validator = Draft202012Validator(schema)
    found: list[tuple[Path, str]] = []
    for error in validator.iter_errors(data):
        for problem in explain(error):
            if problem not in found:
                found.append(problem)
    return found


def explain(error: ValidationError) -> list[tuple[Path, str]]:
    path = tuple(error.absolute_path)
    instance = error.instance
    hint = error.schema.get("x-problem") if isinstance(error.schema, dict) else None
    if error.validator == "not":  # the sentence sits in what must not match
        hint = error.validator_value.get("x-problem") if isinstance(error.validator_value, dict) else None
    if error.validator in ("oneOf", "anyOf"):
        return _alternatives(error, path, hint)
    if hint and error.validator in _HINTED:
        return [(path, _with_found(hint, error))]
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        allowed = list(error.schema.get("properties", {}))
        extra = [key for key in instance if key not in allowed]
        return [((*path, key), _unknown_key(key, allowed)) for key in extra] or [(path, error.message)]
    if error.validator == "required" and isinstance(instance, dict):
        # A required key misspelt (`not:` for `note:`) is said once, by "did you mean".
        unknown = [key for key in instance if key not in error.schema.get("properties", {})]
        missing = [
            key
            for key in error.validator_value
            if key not in instance and not difflib.get_close_matches(key, unknown, n=1)
        ]
        kind = instance.get("type")
        who = f"{kind} needs" if isinstance(kind, str) else "needs"
        return [(path, f"{who} {key}") for key in missing]
    if error.validator == "enum":
        choices = ", ".join(str(choice) for choice in error.validator_value)
        return [(path, f"{_name(path)} must be one of {choices} (got {_yaml(instance)})")]
    if error.validator == "const":
        return [(path, f"{_name(path)} must be {_yaml(error.validator_value)} (got {_yaml(instance)})")]
    if error.validator == "type":
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        words = " or ".join(_JSON_TYPES.get(kind, kind) for kind in wanted)
        return [(path, f"must be {words} (got {_yaml(instance)})")]
    return [(path, _plain(error))]


def _alternatives(error: ValidationError, path: Path, hint: str | None) -> list[tuple[Path, str]]:
    branches: list[Any] = error.validator_value
    instance = error.instance
    key = _discriminator(branches)
    if key is not None and isinstance(instance, dict):
        if key not in instance:
            return []  # the schema's own `required: [type]` says so, once
        values = [branch["properties"][key]["const"] for branch in branches]
        if instance[key] not in values:
            choices = ", ".join(str(value) for value in values)
            what = f"{_name(path)} {key}" if path and isinstance(path[-1], str) else key
            return [((*path, key), f"unknown {what} {instance[key]!r} (one of {choices})")]
        return _branch_errors(error, values.index(instance[key]))
    if hint:
        return [(path, _with_found(hint, error))]
    chosen = _by_required_keys(branches, instance)
    if chosen is None:
        chosen = _by_json_type(branches, instance)
    if chosen is not None:
        return _branch_errors(error, chosen)
    if isinstance(instance, dict):
        needed = [key for branch in branches for key in branch.get("required", [])]
        if needed and not any(key in instance for key in needed):
            return [(path, f"needs one of {', '.join(dict.fromkeys(needed))}")]
    best = best_match(error.context or [])
    return explain(best) if best is not None else [(path, error.message)]


def _branch_errors(error: ValidationError, index: int) -> list[tuple[Path, str]]:
    inside = [e for e in error.context or [] if e.relative_schema_path and e.relative_schema_path[0] == index]
    return [problem for e in inside for problem in explain(e)]


def _discriminator(branches: list[Any]) -> str | None:
    """The key every branch pins to its own constant (``type`` of auth schemes)."""
    if not branches or not all(isinstance(branch, dict) for branch in branches):
        return None
    shared = set.intersection(*(set(branch.get("properties", {})) for branch in branches))
    for key in sorted(shared):
        if all("const" in branch["properties"][key] for branch in branches):
            return key
    return None


def _by_required_keys(branches: list[Any], instance: Any) -> int | None:
    """The only branch whose required keys are all present (``{skip: …}`` in a fallback)."""
    if not isinstance(instance, dict):
        return None
    fitting = [
        i
        for i, branch in enumerate(branches)
        if isinstance(branch, dict)
        and branch.get("required")
        and all(key in instance for key in branch["required"])
    ]
    return fitting[0] if len(fitting) == 1 else None


def _by_json_type(branches: list[Any], instance: Any) -> int | None:
    fitting = [
        i
        for i, branch in enumerate(branches)
        if isinstance(branch, dict)
        and "type" in branch
        and any(Draft202012Validator.TYPE_CHECKER.is_type(instance, t) for t in _listed(branch["type"]))
    ]
    return fitting[0] if len(fitting) == 1 else None


def _unknown_key(key: str, allowed: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(key), list(allowed), n=1)
    return f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def _with_found(hint: str, error: ValidationError) -> str:
    instance = error.instance
    if error.validator == "not" and isinstance(instance, dict):
        # `not: {anyOf: [{required: [json, form]}, …]}`: name the keys that clash.
        clashes = error.validator_value.get("anyOf", [])
        named = {key for branch in clashes for key in branch.get("required", [])}
        present = [key for key in instance if key in named]
        return f"{hint} (this one has {', '.join(present)})"
    if isinstance(instance, dict | list):
        return hint
    return f"{hint} (got {_yaml(instance)})"


def _plain(error: ValidationError) -> str:
    value, instance = error.validator_value, error.instance
    words = {
        "minimum": f"must be at least {value}",
        "maximum": f"must be at most {value}",
        "exclusiveMinimum": f"must be more than {value}",
        "exclusiveMaximum": f"must be less than {value}",
        "minItems": f"needs at least {value} item(s)",
        "maxItems": f"takes at most {value} item(s)",
        "minLength": "must not be empty" if value == 1 else f"needs at least {value} characters",
        "minProperties": f"needs at least {value} key(s)",
    }
    if error.validator == "pattern":
        described = error.schema.get("description")
        return f"{_yaml(instance)} is not in the expected form" + (f": {described}" if described else "")
    if error.validator in words:
        return f"{words[error.validator]} (got {_yaml(instance)})"
    return error.message


def _name(path: Path) -> str:
    named = [part for part in path if isinstance(part, str)]
    return named[-1] if named else "value"


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _yaml(value: Any) -> str:
    """A value as the author wrote it in YAML (``true``, ``'2 seconds'``, ``0``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return repr(value)
