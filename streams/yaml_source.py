"""Read YAML keeping the line of every key, so problems can name FILE:LINE."""

from __future__ import annotations

import os
from pathlib import Path as FsPath
from typing import Any

import yaml

from streams.problems import FlowFileError, Problem, dotted

Path = tuple[str | int, ...]


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last."""


def read_source(path: str | os.PathLike[str]) -> str:
    """A flow or cases file as text; unreadable or non-UTF-8 files are FlowFileErrors."""
    filename = str(path)
    try:
        return FsPath(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise FlowFileError([Problem(filename, 0, "", f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        problem = Problem(filename, 0, "", f"not UTF-8 text: {exc.reason} at byte {exc.start}")
        raise FlowFileError([problem]) from None


def load_yaml(text: str, filename: str) -> tuple[Any, dict[Path, int]]:
    """Parse YAML; return the data and a map from key path to 1-based line."""
    try:
        root = yaml.compose(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise FlowFileError([Problem(filename, line, "", f"YAML syntax: {exc.problem}")]) from None
    if root is None:
        raise FlowFileError([Problem(filename, 1, "", "the file is empty")])
    lines: dict[Path, int] = {(): root.start_mark.line + 1}
    problems: list[Problem] = []
    _index(root, (), lines, problems, filename)
    if problems:
        raise FlowFileError(problems)
    return yaml.safe_load(text), lines


def _index(
    node: yaml.Node, path: Path, lines: dict[Path, int], problems: list[Problem], filename: str
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            child = (*path, key)
            line = key_node.start_mark.line + 1
            if key in seen and key != "<<":
                problems.append(Problem(filename, line, dotted(child), "duplicate key"))
            seen.add(key)
            lines[child] = line
            _index(value_node, child, lines, problems, filename)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[child] = item.start_mark.line + 1
            _index(item, child, lines, problems, filename)


def line_of(lines: dict[Path, int], path: Path) -> int:
    """Line of ``path`` or of its nearest ancestor that has one."""
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path, 1)
