"""Adding a recorded case to a cases file without disturbing what a person wrote there.

The new case is appended as text at the end of the ``cases:`` list, so existing cases,
their layout and comments stay as they were (a YAML round-trip library such as ruamel
would do the same for any layout; it is not a dependency, and appending covers the layout
every cases file here has: ``cases:`` last, as a block list). Any other layout is rewritten
whole, and the caller is told that comments were dropped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

import schemas
from streams.problems import FlowFileError
from streams.testcases import load_cases
from streams.yaml_source import read_source


@dataclass(frozen=True)
class Saved:
    path: Path
    name: str  # the case's name, with a suffix if the wanted one was taken
    rewritten: bool  # the file could not be appended to: written whole, comments dropped
    missing_settings: list[str]  # variables the file's settings lack (the replay reads the environment)


def save_case(
    path: str | os.PathLike[str], case: dict[str, Any], settings: dict[str, str], flow_name: str
) -> Saved:
    """Append ``case`` to the cases file at ``path``, creating it with ``settings`` if absent.
    Raises FlowFileError when an existing file is not a valid cases file."""
    target = Path(path)
    stamp = f"# recorded by leadstreams try --record, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n"
    if not target.exists():
        document = {"settings": settings, "cases": [case]} if settings else {"cases": [case]}
        header = f"# Saved cases for {flow_name}: `leadstreams test FLOW` replays them offline.\n"
        target.write_text(header + stamp + _dump(document), encoding="utf-8")
        return Saved(target, case["name"], rewritten=False, missing_settings=[])
    text = read_source(target)
    cases, file_settings = _existing_cases(target, text, case)
    case = {**case, "name": _free_name(case["name"], {c.name for c in cases})}
    missing = [name for name in settings if name not in file_settings]
    appended = _appended(text, case, stamp)
    if appended is not None:
        target.write_text(appended, encoding="utf-8")
        if _last_case_is(target, len(cases) + 1, case):
            return Saved(target, case["name"], rewritten=False, missing_settings=missing)
    data = yaml.safe_load(text)
    data["cases"] = [*data["cases"], case]
    target.write_text(_dump(data), encoding="utf-8")
    return Saved(target, case["name"], rewritten=True, missing_settings=missing)


def case_text(case: dict[str, Any], settings: dict[str, str]) -> str:
    """A cases file holding just ``case``: what a recording that could not be saved shows,
    so the run's partner calls are not lost."""
    return _dump({"settings": settings, "cases": [case]} if settings else {"cases": [case]})


def _existing_cases(target: Path, text: str, case: dict[str, Any]) -> tuple[list[Any], dict[str, str]]:
    """The file's cases and settings. A file with an empty list (``cases: []``, a person's
    start) is not a valid cases file to replay, but is one to record into: accepted when the
    file with the new case would be valid; every other error is the replay's own."""
    try:
        return load_cases(target)
    except FlowFileError:
        data = yaml.safe_load(text)  # load_cases read it: it parses
        if not (isinstance(data, dict) and data.get("cases") == []):
            raise
        if any(Draft202012Validator(schemas.load("cases")).iter_errors({**data, "cases": [case]})):
            raise
        return [], {str(k): str(v) for k, v in (data.get("settings") or {}).items()}


def _free_name(wanted: str, taken: set[str]) -> str:
    name, number = wanted, 2
    while name in taken:
        name, number = f"{wanted} ({number})", number + 1
    return name


def _appended(text: str, case: dict[str, Any], stamp: str) -> str | None:
    """``text`` with ``case`` as a new last item of its ``cases:`` block list, or None when the
    list is not the file's last top-level entry in block style."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(root, yaml.MappingNode) or not root.value:
        return None
    key, value = root.value[-1]
    if key.value != "cases" or not isinstance(value, yaml.SequenceNode) or value.flow_style:
        return None
    indent = " " * value.start_mark.column  # the column of the items' dashes
    item = "".join(indent + line for line in (stamp + _dump([case])).splitlines(keepends=True))
    return text + ("" if text.endswith("\n") else "\n") + item


def _last_case_is(path: Path, count: int, case: dict[str, Any]) -> bool:
    """The appended text reads back as intended (a file ending in ``...`` or the like would not)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return False
    cases = data.get("cases") if isinstance(data, dict) else None
    return isinstance(cases, list) and len(cases) == count and cases[-1] == case


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False, width=4096)
