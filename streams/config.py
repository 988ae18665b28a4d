"""Reading a component's block of a flow file: what every ``from_config`` shares.

Each component (auth scheme, body format, retry policy, circuit, …) owns its spec beside its
code: ``CONFIG``, the JSON-schema fragment of its block (without defaults), and
``from_config(raw, read)``. One rule for defaults: a key the file leaves out is left out of the
constructor call, so the dataclass field default applies — the one place a default is written.
``schema_fragment`` copies those defaults into the fragment (``default``) for editors and the
README check; a default the dataclass cannot hold (``header: None`` meaning ``X-API-Key``) is a
module constant the code uses, named in ``CONFIG`` once.

``read`` reports problems at their key and reading goes on, so ``leadstreams check`` lists every
problem of a block; the loader's reader knows file, line and column. Without one (library use),
the first problem raises ValueError.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol

import jinja2

from streams.durations import parse_duration
from streams.problems import dotted
from streams.templates import Value, compile_value, environment
from streams.urls import encode_path_value

Key = str | int
Keys = tuple[Key, ...]
DURATION = {"$ref": "#/$defs/duration"}
TEMPLATE = {"$ref": "#/$defs/template"}


class Reader(Protocol):
    """Where a component's block sits: ``problem`` says what is wrong at a key inside it."""

    strict: bool

    def problem(self, keys: Keys, message: str) -> None: ...

    def compile(self, raw: Any, keys: Keys, url: bool = False, strict: bool | None = None) -> Value:
        """``raw`` as a template (``strict``: None for the reader's own)."""
        ...


class Sink(Protocol):
    """What a loader gives ``At``: problems and templates at a whole path."""

    def problem(self, path: Keys, message: str) -> None: ...

    def compile(self, raw: Any, path: Keys, strict: bool = False, url: bool = False) -> Value: ...


class At:
    """A ``Reader`` for the block at ``path`` of a loader's file."""

    def __init__(self, sink: Sink, path: Keys, strict: bool = False) -> None:
        self.sink, self.path, self.strict = sink, path, strict

    def problem(self, keys: Keys, message: str) -> None:
        self.sink.problem((*self.path, *keys), message)

    def compile(self, raw: Any, keys: Keys, url: bool = False, strict: bool | None = None) -> Value:
        return self.sink.compile(raw, (*self.path, *keys), self.strict if strict is None else strict, url)


class Component(Protocol):
    CONFIG: ClassVar[dict[str, Any]]

    @classmethod
    def from_config(cls, raw: Any, read: Reader) -> Any: ...


class Raising:
    """The reader for library use: the first problem is a ValueError naming its key."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict

    def problem(self, keys: Keys, message: str) -> None:
        raise ValueError(f"{dotted(keys)}: {message}" if keys else message)

    def compile(self, raw: Any, keys: Keys, url: bool = False, strict: bool | None = None) -> Value:
        env = environment(self.strict if strict is None else strict, encode_path_value if url else None)
        try:
            return compile_value(raw, env)
        except jinja2.TemplateSyntaxError as exc:
            raise ValueError(f"{dotted(keys)}: template syntax: {exc.message}") from None


RAISE = Raising()


def duration(read: Reader, raw: Any, keys: Keys, zero: str | None = None) -> float | None:
    """Seconds, or None when absent (or wrong, then reported). ``zero`` is the problem to
    report for a 0 where 0 has no meaning (a timeout of 0 is no timeout to aiohttp)."""
    if raw is None:
        return None
    try:
        seconds = parse_duration(raw)
    except ValueError as exc:
        read.problem(keys, str(exc))
        return None
    if zero is not None and seconds == 0:
        read.problem(keys, zero)
        return None
    return seconds


SKIP: Any = object()  # a converter's answer for a wrong value (reported): leave the default


def given(raw: Mapping[str, Any], converters: Mapping[str, Callable[[Any], Any]]) -> dict[str, Any]:
    """The constructor arguments for the keys ``raw`` gives, each through its converter."""
    found = {key: convert(raw[key]) for key, convert in converters.items() if key in raw}
    return {key: value for key, value in found.items() if value is not SKIP}


def durations(
    read: Reader, *keys: str, zero: Mapping[str, str] | None = None
) -> dict[str, Callable[[Any], Any]]:
    """Converters for duration keys (for ``given``); a wrong one is reported and SKIP."""
    return {key: _duration_of(read, key, (zero or {}).get(key)) for key in keys}


def _duration_of(read: Reader, key: str, zero: str | None) -> Callable[[Any], Any]:
    def convert(raw: Any) -> Any:
        seconds = duration(read, raw, (key,), zero)
        return SKIP if seconds is None else seconds

    return convert


def same(value: Any) -> Any:
    return value


def optional_text(value: Any) -> str | None:
    """A string option where an explicit null (or empty string) means "not set"."""
    return None if value is None or value == "" else str(value)


def schema_fragment(component: Any) -> dict[str, Any]:
    """``component.CONFIG`` with each property's ``default`` from the dataclass field of the
    same name (durations as text: ``30s``), so the default is written once, in the code."""
    fragment = copy.deepcopy(component.CONFIG)
    fields = {f.name: f for f in dataclasses.fields(component)} if dataclasses.is_dataclass(component) else {}
    properties = fragment.get("properties", {})
    for name, prop in properties.items():
        field = fields.get(name)
        if (
            field is None
            or "default" in prop
            or field.default is dataclasses.MISSING
            or field.default is None
        ):
            continue
        # A new dict: fragments share sub-schemas (DURATION), each property has its own default.
        properties[name] = {**prop, "default": shown(field.default, prop == DURATION)}
    return fragment


def shown(value: Any, is_duration: bool = False) -> Any:
    """A default as a flow file writes it."""
    if is_duration:
        return seconds_text(float(value))
    if isinstance(value, frozenset):
        return sorted(value)
    return value


def seconds_text(seconds: float) -> str:
    """``0.2`` -> ``200ms``, ``300`` -> ``5m``, ``3600`` -> ``1h``."""
    for unit, size in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms" if seconds < 1 else f"{seconds:g}s"
