"""Sandboxed Jinja2 templates for flow values.

A string that is exactly one ``{{ … }}`` is evaluated as an expression and keeps
its type (a boolean stays a boolean); any other string renders to text. Each
value is compiled once when the flow loads.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from typing import Any, Protocol

import jinja2
from jinja2 import nodes
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from streams.filters import FILTERS
from streams.masking import learn

Context = Mapping[str, Any]
_LONE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}|\{%|\{#).)*)\}\}\s*$", re.S)


class TemplateRenderError(Exception):
    """A template failed while rendering (undefined value in strict mode, sandbox refusal, …)."""


class LeadEnvironment(SandboxedEnvironment):
    """Looks up mapping keys before attributes, so a lead field named ``items``
    or ``values`` is the field and not the dict method."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        """Refuse unsafe access loudly: a chainable undefined would hide it as None."""
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe.")


@cache
def environment(strict: bool = False, finalize: Callable[[Any], Any] | None = None) -> LeadEnvironment:
    """One shared environment per (strictness, output encoding)."""
    env = LeadEnvironment(
        undefined=jinja2.StrictUndefined if strict else jinja2.ChainableUndefined,
        finalize=finalize,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    env.filters[_LEARN_FILTER] = _learn_secret
    return env


# Settings are secrets, and so is what is computed from them alone: the output of every
# (largest) sub-expression that reads `settings` and no other name, beyond a plain lookup
# `settings.key` (masked as it is), is registered with the Masker when it renders: `{{
# settings.key | b64encode }}` in a header, or the hash in `{{ lead.id ~ (settings.salt |
# sha256) }}`, would otherwise show in clear. The whole output of an expression that mixes in
# lead data is per lead, like a signature, and is not learned.
_LEARN_FILTER = "_learn_secret"


def _learn_secret(value: Any) -> Any:
    # Text only, never numbers: a secret is text, while `settings.max * 100` is a count that
    # lead data may hold too, and masking "500000" would rewrite every event (even unquoted
    # JSON numbers, making them invalid). `learn` skips text too short to be a secret.
    if isinstance(value, str):
        learn(value)
    return value


def _derived_from_settings(node: nodes.Node) -> bool:
    """True for an expression over `settings` alone that is more than a lookup in it."""
    if not isinstance(node, nodes.Expr):
        return False
    names = {
        n.name for n in (node, *node.find_all(nodes.Name)) if isinstance(n, nodes.Name) and n.ctx == "load"
    }
    if names != {"settings"}:
        return False
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        node = node.node
    return not isinstance(node, nodes.Name)  # settings.a.b is a setting; anything else is derived


def _mark_derived(node: nodes.Node, env: LeadEnvironment) -> bool:
    """Pass every largest settings-derived sub-expression of ``node`` through the learning
    filter, in place; True when there was one."""
    marked = False
    for field in node.fields:
        value = getattr(node, field, None)
        children = value if isinstance(value, list) else [value]
        for index, child in enumerate(children):
            if not isinstance(child, nodes.Node):
                continue
            if _derived_from_settings(child):
                children[index] = nodes.Filter(
                    child, _LEARN_FILTER, [], [], None, None, lineno=child.lineno, environment=env
                )
                marked = True
            else:
                marked = _mark_derived(child, env) or marked
        if not isinstance(value, list) and children[0] is not value:
            setattr(node, field, children[0])
    return marked


def _marked_template(env: LeadEnvironment, source: str) -> nodes.Template | str:
    """``source`` parsed and marked, or unchanged when nothing in it derives from settings."""
    if "settings" not in source:
        return source
    tree = env.parse(source)
    return tree if _mark_derived(tree, env) else source


def _compile_expression(env: LeadEnvironment, expr: str) -> TemplateExpression:
    """``env.compile_expression(expr)`` (the same steps), with settings-derived parts marked."""
    if "settings" in expr:
        output = env.parse(f"{{{{{expr}}}}}").body[0]
        if isinstance(output, nodes.Output) and len(output.nodes) == 1 and _mark_derived(output, env):
            body = [nodes.Assign(nodes.Name("result", "store"), output.nodes[0], lineno=1)]
            return TemplateExpression(env.from_string(nodes.Template(body, lineno=1)), False)
    return env.compile_expression(expr, undefined_to_none=False)


class Value(Protocol):
    def render(self, context: Context) -> Any: ...


class Literal:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def render(self, context: Context) -> Any:
        return self.value


class Expression:
    """A lone ``{{ expr }}``: returns the native value; undefined becomes None.

    A plain dotted name (``lead.email``, most of a flow) skips Jinja's per-call context
    set-up and does exactly what Jinja's compiled code does: the name from the context
    or the globals, then ``environment.getattr`` per part (sandbox and undefined rules
    included). ``tests/test_templates.py`` holds both ways to the same results."""

    __slots__ = ("env", "expression", "negate", "path", "source")

    def __init__(self, env: LeadEnvironment, source: str, expr: str, where: str = "") -> None:
        self.source = f"{where}: {source}" if where else source
        self.env = env
        self.expression = _compile_expression(env, expr)
        negated = _NOT.match(expr)
        self.negate = negated is not None  # `not lead.x`, as common as `lead.x` in conditions
        name = negated.group(1) if negated else expr
        dotted = _DOTTED_NAME.match(name)
        self.path: tuple[str, ...] | None = None
        if dotted and dotted.group(1) not in _RESERVED_NAMES:  # Jinja resolves `self` itself
            self.path = tuple(part.strip() for part in name.split("."))

    def render(self, context: Context) -> Any:
        try:
            if self.path is None:
                result = self.expression(**context)
            else:
                result = self._lookup(context)
                if self.negate:
                    result = not result  # a strict undefined raises here, as in Jinja
            if isinstance(result, jinja2.Undefined):
                if isinstance(result, jinja2.StrictUndefined):
                    str(result)  # raises UndefinedError with the missing name
                return None
        except jinja2.TemplateError as exc:
            raise TemplateRenderError(f"{self.source}: {exc}") from exc
        except Exception as exc:  # user expressions can raise anything (e.g. 1/0)
            raise TemplateRenderError(f"{self.source}: {type(exc).__name__}: {exc}") from exc
        return result

    def _lookup(self, context: Context) -> Any:
        assert self.path is not None
        root, *parts = self.path
        env = self.env
        value = context.get(root, _MISSING)
        if value is _MISSING:
            value = env.globals.get(root, _MISSING)
            if value is _MISSING:
                value = env.undefined(name=root)
        for part in parts:
            value = env.getattr(value, part)
        return value


_DOTTED_NAME = re.compile(r"^\s*([A-Za-z_]\w*)(?:\s*\.\s*[A-Za-z_]\w*)*\s*$")
_NOT = re.compile(r"^\s*not\s+(.*)$", re.S)
_LITERAL_NAMES = frozenset({"true", "false", "none", "True", "False", "None"})
_RESERVED_NAMES = _LITERAL_NAMES | {"self", "loop"}
_MISSING = object()


class Text:
    """Any other template string: renders to ``str``."""

    __slots__ = ("source", "template")

    def __init__(self, env: LeadEnvironment, source: str, where: str = "") -> None:
        self.source = f"{where}: {source}" if where else source
        self.template = env.from_string(_marked_template(env, source))

    def render(self, context: Context) -> str:
        try:
            return self.template.render(context)
        except jinja2.TemplateError as exc:
            raise TemplateRenderError(f"{self.source}: {exc}") from exc
        except Exception as exc:
            raise TemplateRenderError(f"{self.source}: {type(exc).__name__}: {exc}") from exc


class MappingValue:
    __slots__ = ("items",)

    def __init__(self, items: dict[str, Value]) -> None:
        self.items = items

    def render(self, context: Context) -> dict[str, Any]:
        return {key: value.render(context) for key, value in self.items.items()}


class ListValue:
    __slots__ = ("items",)

    def __init__(self, items: list[Value]) -> None:
        self.items = items

    def render(self, context: Context) -> list[Any]:
        return [value.render(context) for value in self.items]


Location = Callable[[tuple[str | int, ...]], str]  # a path inside the value -> "FILE:LINE: path"
# Set by ``located`` while a value whose parts compile elsewhere is built: request bodies
# compile their templates in their own modules (streams.bodies), which know nothing of the
# file, yet their render errors must say where they are, as every other template's do.
_LOCATION: ContextVar[Location | None] = ContextVar("leadstreams_template_location", default=None)


@contextmanager
def located(location: Location) -> Iterator[None]:
    """Templates compiled inside without a ``where`` of their own are located by ``location``
    (given their path inside the value passed to ``compile_value``: ``("lead", "dob")``)."""
    token = _LOCATION.set(location)
    try:
        yield
    finally:
        _LOCATION.reset(token)


def compile_value(raw: Any, env: LeadEnvironment, where: str = "") -> Value:
    """Compile a YAML value (string, number, mapping, list) into a renderable Value.

    ``where`` (e.g. ``flow.yaml:12: steps.0.map.score``) prefixes render errors; without it,
    the enclosing ``located`` says where each part is. Raises ``jinja2.TemplateSyntaxError``
    for a malformed template."""
    location = None if where else _LOCATION.get()
    return _compile(raw, env, where, location, ())


def _compile(
    raw: Any, env: LeadEnvironment, where: str, location: Location | None, path: tuple[str | int, ...]
) -> Value:
    if isinstance(raw, str):
        if "{{" not in raw and "{%" not in raw:
            return Literal(raw)
        if location is not None:
            where = location(path)
        lone = _LONE_EXPRESSION.match(raw)
        # An encoding environment (URL paths) renders text, so a lone {{ }} is encoded too.
        if lone and env.finalize is None:
            return Expression(env, raw, lone.group("expr"), where)
        return Text(env, raw, where)
    if isinstance(raw, dict) and {"for_each", "item"} <= raw.keys() <= {"for_each", "as", "item"}:
        name = raw.get("as", "item")
        if not isinstance(name, str) or not name.isidentifier() or name in _RESERVED_NAMES:
            raise ValueError(
                f"for_each: `as: {name}` must be a name (not {', '.join(sorted(_RESERVED_NAMES))})"
            )
        items = _compile(raw["for_each"], env, where, location, (*path, "for_each"))
        item = _compile(raw["item"], env, where, location, (*path, "item"))
        return EachValue(items, name, item)
    if isinstance(raw, dict):
        return MappingValue(
            {str(key): _compile(value, env, where, location, (*path, str(key))) for key, value in raw.items()}
        )
    if isinstance(raw, list):
        return ListValue([_compile(value, env, where, location, (*path, i)) for i, value in enumerate(raw)])
    return Literal(raw)


class EachValue:
    """``{for_each: "{{ batch.leads }}", as: lead, item: {...}}``: a list with one rendered
    ``item`` per element, so a body can list leads without string concatenation."""

    __slots__ = ("item", "items", "name")

    def __init__(self, items: Value, name: str, item: Value) -> None:
        self.items, self.name, self.item = items, name, item

    def render(self, context: Context) -> list[Any]:
        elements = self.items.render(context)
        if elements is None:
            return []
        if isinstance(elements, (str, bytes, dict)) or not hasattr(elements, "__iter__"):
            raise TemplateRenderError(f"for_each needs a list, got {type(elements).__name__}")
        return [self.item.render({**context, self.name: element}) for element in elements]


def truthy(value: Any) -> bool:
    """Truth of a rendered condition; the strings "false", "0", "no", "" are false."""
    if isinstance(value, str):
        return value.strip().lower() not in {"", "false", "0", "no", "off", "none", "null"}
    return bool(value)
