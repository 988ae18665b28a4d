"""Read YAML keeping the line and column of every key, so problems can name FILE:LINE:COLUMN."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
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


@dataclass
class Source:
    """A parsed YAML file: its data, where each key path starts (1-based line and column),
    and the duplicate keys found (the last one wins in ``data``, as in YAML loaders)."""

    data: Any
    lines: dict[Path, int]
    columns: dict[Path, int] = field(default_factory=dict)
    duplicates: list[Problem] = field(default_factory=list)

    def line(self, path: Path) -> int:
        return line_of(self.lines, path)

    def column(self, path: Path) -> int:
        return self.columns.get(_known(self.lines, path), 0)


def load_yaml(text: str, filename: str) -> tuple[Any, dict[Path, int]]:
    """Parse YAML; return the data and a map from key path to 1-based line.
    Duplicate keys are FlowFileErrors."""
    source = parse_yaml(text, filename)
    if source.duplicates:
        raise FlowFileError(source.duplicates)
    return source.data, source.lines


def parse_yaml(text: str, filename: str) -> Source:
    """Parse YAML with positions; a duplicate key is listed, not fatal, so that a
    `check` still reports every other problem of the file."""
    try:
        root = yaml.compose(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as exc:
        raise FlowFileError([_marked(exc, filename, "YAML syntax")]) from None
    except yaml.YAMLError as exc:
        raise FlowFileError([_unmarked(exc, text, filename)]) from None
    if root is None:
        raise FlowFileError([Problem(filename, 1, "", "the file is empty")])
    # Well-formed YAML can still fail to become data: an unknown tag (`!secs 5`), a complex key
    # (`? [a, b]`). The indexing below needs the data's keys to be hashable scalars, so build first.
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        context = f" ({exc.context})" if exc.context and exc.context != exc.problem else ""
        raise FlowFileError([_marked(exc, filename, "YAML", context)]) from None
    source = Source(data, {(): root.start_mark.line + 1}, {(): root.start_mark.column + 1})
    _index(root, (), source, filename)
    return source


def _marked(exc: yaml.MarkedYAMLError, filename: str, kind: str, context: str = "") -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else 1
    column = mark.column + 1 if mark else 0
    return Problem(filename, line, "", f"{kind}: {exc.problem}{context}", column)


def _unmarked(exc: yaml.YAMLError, text: str, filename: str) -> Problem:
    """A YAMLError without a mark: the reader's refusal of a character, at its position."""
    message = str(exc).split("\n", 1)[0]
    position = getattr(exc, "position", None)
    if not isinstance(position, int):
        return Problem(filename, 1, "", f"YAML: {message}")
    line = text.count("\n", 0, position) + 1
    column = position - text.rfind("\n", 0, position)  # (rfind is -1 on the first line)
    return Problem(filename, line, "", f"YAML: {message}", column)


def _index(node: yaml.Node, path: Path, source: Source, filename: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            child = (*path, key)
            line, column = key_node.start_mark.line + 1, key_node.start_mark.column + 1
            if key in seen and key != "<<":
                first = source.lines[child]
                message = f"duplicate key {key!r} (first on line {first}; this one wins)"
                source.duplicates.append(Problem(filename, line, dotted(child), message, column))
            seen.add(key)
            source.lines[child], source.columns[child] = line, column
            _index(value_node, child, source, filename)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            source.lines[child] = item.start_mark.line + 1
            source.columns[child] = item.start_mark.column + 1
            _index(item, child, source, filename)


def _known(lines: dict[Path, int], path: Path) -> Path:
    """``path`` or its nearest ancestor that has a position."""
    while path not in lines and path:
        path = path[:-1]
    return path


def line_of(lines: dict[Path, int], path: Path) -> int:
    """Line of ``path`` or of its nearest ancestor that has one."""
    return lines.get(_known(lines, path), 1)
