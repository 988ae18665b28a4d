"""Templates: typed lone expressions, text rendering, undefined handling, sandbox, filters."""

from __future__ import annotations

from typing import Any

import pytest

from streams.templates import Expression, TemplateRenderError, Text, compile_value, environment, truthy

LEAD: dict[str, Any] = {
    "email": "ann@example.com",
    "opted_in": True,
    "age": 42,
    "address": {"city": "Oslo", "zip": "0150"},
    "tags": ["a", "b"],
    "phone": "(555) 123-4567",
    "items": "field-items",
    "values": [1, 2, 3],
}


def render(source: Any, lead: dict[str, Any] | None = None, strict: bool = False) -> Any:
    return compile_value(source, environment(strict)).render({"lead": LEAD if lead is None else lead})


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ lead.opted_in }}", True),
        ("{{ lead.age }}", 42),
        ("  {{ lead.address }}  ", {"city": "Oslo", "zip": "0150"}),
        ("{{ lead.tags }}", ["a", "b"]),
        ("{{ lead.age + 1 }}", 43),
    ],
)
def test_lone_expression_keeps_its_type(source: str, expected: Any) -> None:
    value = render(source)
    assert value == expected
    assert type(value) is type(expected)


def test_mixed_text_renders_to_str() -> None:
    assert render("age={{ lead.age }} ok={{ lead.opted_in }}") == "age=42 ok=True"
    assert isinstance(compile_value("x {{ lead.age }}", environment()), Text)
    assert isinstance(compile_value("{{ lead.age }}", environment()), Expression)


def test_two_expressions_are_text_not_one_expression() -> None:
    assert render("{{ lead.age }}{{ lead.age }}") == "4242"


def test_plain_values_are_returned_as_is() -> None:
    assert render("no template here") == "no template here"
    assert render(7) == 7
    assert render({"a": "{{ lead.age }}", "b": ["{{ lead.opted_in }}", "x"]}) == {"a": 42, "b": [True, "x"]}


def test_missing_field_is_none_alone_and_empty_in_text() -> None:
    assert render("{{ lead.nope }}") is None
    assert render("[{{ lead.nope }}]") == "[]"


def test_nested_missing_field_is_none_without_error() -> None:
    assert render("{{ lead.source.id }}") is None
    assert render("id={{ lead.source.id }}") == "id="


@pytest.mark.parametrize(
    ("source", "missing"),
    [("{{ lead.nope }}", "'nope'"), ("x {{ lead.nope }}", "'nope'"), ("{{ lead.source.id }}", "'source'")],
)
def test_strict_missing_field_raises_naming_it(source: str, missing: str) -> None:
    with pytest.raises(TemplateRenderError, match=f"has no attribute {missing}"):
        render(source, strict=True)


def test_strict_present_field_renders() -> None:
    assert render("{{ lead.address.city }}", strict=True) == "Oslo"


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "x {{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ lead.__class__ }}",
        "{{ lead['__class__'] }}",
    ],
)
def test_sandbox_refuses_unsafe_attribute_access(source: str, strict: bool) -> None:
    with pytest.raises(TemplateRenderError, match="unsafe"):
        render(source, strict=strict)


def test_expression_errors_become_template_render_errors() -> None:
    with pytest.raises(TemplateRenderError, match="ZeroDivisionError"):
        render("{{ lead.age / 0 }}")


def test_field_named_like_a_dict_method_is_the_field() -> None:
    assert render("{{ lead.items }}") == "field-items"
    assert render("{{ lead.values }}") == [1, 2, 3]
    assert render("n={{ lead.values | length }}") == "n=3"


def test_digits_filter() -> None:
    assert render("{{ lead.phone | digits }}") == "5551234567"
    assert render("{{ lead.nope | digits }}") == ""
    assert render("{{ lead.age | digits }}") == "42"


def test_regex_replace_filter() -> None:
    assert render("{{ lead.email | regex_replace('@.*$', '@hidden') }}") == "ann@hidden"
    assert render("{{ lead.phone | regex_replace('[^0-9]') }}") == "5551234567"
    assert render("{{ lead.nope | regex_replace('x', 'y') }}") == ""


@pytest.mark.parametrize(
    "value", ["", "false", "FALSE", " no ", "0", "off", "none", "null", 0, None, False, [], {}]
)
def test_truthy_false_values(value: Any) -> None:
    assert truthy(value) is False


@pytest.mark.parametrize("value", ["yes", "true", "x", "00x", 1, True, [0], {"a": 1}, "ann@example.com"])
def test_truthy_true_values(value: Any) -> None:
    assert truthy(value) is True


# --- the dotted-name fast path does what Jinja does ---------------------------------------------

FAST_PATHS = ["lead.email", "lead.items", "lead.a.b.c", "lead . a . b", "missing", "missing.x",
              "lead.nothing.x", "lead.none_value.x", "range", "lead.__class__", "settings.key",
              "not lead.email", "not  lead.nothing", "not missing", "not lead.a.b.c",
              "not lead.__class__"]  # fmt: skip
FAST_CONTEXTS: list[dict[str, Any]] = [
    {
        "lead": {"email": "a@b", "items": [1], "a": {"b": {"c": 3}}, "none_value": None},
        "settings": {"key": "k"},
    },
    {"lead": None},
    {"lead": "text"},
    {},
]


def _outcome(value: Any, context: dict[str, Any]) -> tuple[str, str]:
    try:
        return "ok", repr(value.render(context))
    except TemplateRenderError as exc:
        return "error", str(exc)


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("expr", FAST_PATHS)
def test_the_dotted_name_fast_path_matches_jinja(expr: str, strict: bool) -> None:
    env = environment(strict)
    fast = Expression(env, "{{ " + expr + " }}", expr)
    slow = Expression(env, "{{ " + expr + " }}", expr)
    slow.path = None  # Jinja's own compiled expression
    assert fast.path is not None
    for context in FAST_CONTEXTS:
        assert _outcome(fast, context) == _outcome(slow, context), (expr, context)


@pytest.mark.parametrize(
    "expr",
    [
        "true",
        "none",
        "lead.a + 1",
        "lead['a']",
        "lead.a | upper",
        "not not lead.a",
        "not lead.a or lead.b",
        "nothing"[:0] + "not true",
    ],
)
def test_other_expressions_go_through_jinja(expr: str) -> None:
    assert Expression(environment(False), "{{ " + expr + " }}", expr).path is None


def test_expressions_over_settings_keep_their_types_and_errors() -> None:
    """Issue #16.2: settings-derived parts are passed through the masker's learning filter,
    which must not change what they render."""
    from streams.masking import forget_learned

    context = {"settings": {"n": 21, "key": "abcdefgh", "flag": True}, "lead": {"id": "L1"}}
    loose, strict = environment(False), environment(True)
    try:
        assert compile_value("{{ settings.n * 2 }}", loose).render(context) == 42
        assert compile_value("{{ settings.flag and settings.n > 1 }}", loose).render(context) is True
        assert compile_value("{{ [settings.key | upper] }}", loose).render(context) == ["ABCDEFGH"]
        assert compile_value("{{ settings.nope | upper }}", loose).render(context) == ""
        with pytest.raises(TemplateRenderError, match="nope"):
            compile_value("{{ settings.nope | upper }}", strict).render(context)
        assert compile_value("x{{ settings.key | b64encode }}", loose).render(context) == "xYWJjZGVmZ2g="
    finally:
        forget_learned()
