"""Template filters, rendered through the real sandboxed environment as a flow's templates are."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import date, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.filters import FILTERS
from streams.templates import TemplateRenderError, compile_value, environment

LEAD: dict[str, Any] = {
    "email": "Ann@Example.com",
    "phone": "+1 (555) 123-4567",
    "dob": "1990-03-07",
    "dob_us": "3/7/1990",
    "ref": "order ID-42 (web)",
    "empty": "",
    "null": None,
    "zero": 0,
    "age": 42,
}

RESPONSE: dict[str, Any] = {
    "status": "ok",
    "data": {
        "results": [
            {"id": "a1", "score": 0.9, "tags": ["hot"], "owner": {"email": "x@example.com"}},
            {"id": "b2", "score": 0.4, "tags": [], "owner": {"email": "y@example.com"}},
            {"id": "c3", "score": 0.7, "tags": ["warm", "hot"], "owner": None},
        ],
        "next": None,
    },
}


def render(source: str, lead: dict[str, Any] | None = None, strict: bool = False, **context: Any) -> Any:
    return compile_value(source, environment(strict)).render(
        {"lead": LEAD if lead is None else lead, **context}
    )


def test_every_filter_is_documented_and_named() -> None:
    assert set(FILTERS) == {
        "digits", "regex_replace", "regex_search", "date", "age", "b64encode", "b64decode",
        "md5", "sha1", "sha256", "sha512", "hmac", "urlencode", "jsonpath", "jsonpath_first", "coalesce",
        "int", "float",
    }  # fmt: skip
    for name, func in FILTERS.items():
        assert func.__doc__ and func.__doc__.strip(), name


# --- text ---


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ lead.ref | regex_search('ID-\\\\d+') }}", "ID-42"),
        ("{{ lead.ref | regex_search('ID-(\\\\d+)', 1) }}", "42"),
        ("{{ lead.ref | regex_search('ID-(?P<n>\\\\d+)', 'n') }}", "42"),
        ("{{ lead.ref | regex_search('nothing') }}", None),
        ("{{ lead.ref | regex_search('(x)?order', 1) }}", None),
        ("{{ lead.nope | regex_search('x') }}", None),
        ("{{ lead.null | regex_search('x') }}", None),
        ("{{ lead.age | regex_search('\\\\d') }}", "4"),
    ],
)
def test_regex_search(source: str, expected: str | None) -> None:
    assert render(source) == expected


def test_regex_search_in_text_and_bad_pattern() -> None:
    assert render("id={{ lead.ref | regex_search('ID-(\\\\d+)', 1) }}") == "id=42"
    with pytest.raises(TemplateRenderError, match="error"):
        render("{{ lead.ref | regex_search('(') }}")


def test_regex_replace_with_group_reference() -> None:
    assert render("{{ lead.phone | regex_replace('\\\\D+', '-') }}") == "-1-555-123-4567"
    assert render("{{ lead.email | regex_replace('^(\\\\w+)@.*$', '\\\\1') }}") == "Ann"


@given(st.text())
def test_digits_keeps_only_digits(text: str) -> None:
    result = render("{{ value | digits }}", value=text)
    assert result == "".join(char for char in text if char in "0123456789")


# --- dates ---


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ lead.dob | date('MM/DD/YYYY') }}", "03/07/1990"),
        ("{{ lead.dob | date('M/D/YY') }}", "3/7/90"),
        ("{{ lead.dob | date('DD.MM.YYYY') }}", "07.03.1990"),
        ("{{ lead.dob | date('%d %b %Y') }}", "07 Mar 1990"),
        ("{{ lead.dob_us | date('YYYY-MM-DD', 'M/D/YYYY') }}", "1990-03-07"),
        ("{{ lead.dob_us | date('YYYY-MM-DD', 'MM/DD/YYYY') }}", "1990-03-07"),
        ("{{ lead.dob_us | date('YYYY-MM-DD', input_format='%m/%d/%Y') }}", "1990-03-07"),
        ("{{ '2024-02-29T13:05:09Z' | date('YYYY-MM-DDTHH:mm:ss') }}", "2024-02-29T13:05:09"),
        ("{{ '07 Mar 1990' | date('YYYY-MM-DD', '%d %b %Y') }}", "1990-03-07"),
        ("{{ ' 1990-03-07 ' | date('YYYYMMDD') }}", "19900307"),
    ],
)
def test_date_formats(source: str, expected: str) -> None:
    assert render(source) == expected


def test_date_accepts_date_and_datetime_objects() -> None:
    assert render("{{ d | date('MM/DD/YYYY HH:mm') }}", d=date(2001, 12, 31)) == "12/31/2001 00:00"
    assert (
        render("{{ d | date('MM/DD/YYYY HH:mm') }}", d=datetime(2001, 12, 31, 23, 59)) == "12/31/2001 23:59"
    )


@pytest.mark.parametrize("field", ["nope", "null", "empty"])
def test_blank_dates_are_none_alone_and_empty_in_text(field: str) -> None:
    assert render(f"{{{{ lead.{field} | date('MM/DD/YYYY') }}}}") is None
    assert render(f"{{{{ lead.{field} | age }}}}") is None
    assert render(f"dob={{{{ lead.{field} | date('MM/DD/YYYY') }}}}") == (
        "dob=" if field == "nope" else "dob=None"
    )


def test_missing_date_falls_back_to_default() -> None:
    assert render("{{ lead.nope | date('YYYY') | default('unknown') }}") == "unknown"


def test_strict_mode_still_names_a_missing_field() -> None:
    with pytest.raises(TemplateRenderError, match="has no attribute 'nope'"):
        render("{{ lead.nope | date('YYYY') }}", strict=True)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "{{ '31/31/2020' | date('YYYY-MM-DD', 'MM/DD/YYYY') }}",
            "date: cannot parse '31/31/2020' as MM/DD/YYYY",
        ),
        ("{{ 'yesterday' | date('YYYY') }}", "date: cannot parse 'yesterday' as an ISO-8601 date"),
        ("{{ '1990-02-30' | date('YYYY') }}", "date: cannot parse '1990-02-30'"),
        ("{{ lead.dob | date('MMM D, YYYY') }}", "date: unsupported token 'MMM' in format 'MMM D, YYYY'"),
        ("{{ lead.dob | date('today') }}", "date: format 'today' has no date tokens"),
        ("{{ 'soon' | age }}", "age: cannot parse 'soon' as an ISO-8601 date"),
        (
            "{{ '2030-01-01' | age(today='2026-11-28') }}",
            r"age: birth date 2030-01-01 is after today \(2026-11-28\)",
        ),
    ],
)
def test_date_errors_are_clear(source: str, message: str) -> None:
    with pytest.raises(TemplateRenderError, match=message):
        render(source)


@pytest.mark.parametrize(
    ("born", "today", "expected"),
    [
        ("1990-03-07", "2026-11-28", 36),
        ("1990-11-28", "2026-11-28", 36),  # birthday today
        ("1990-11-29", "2026-11-28", 35),  # birthday tomorrow
        ("2026-11-28", "2026-11-28", 0),
        ("2000-02-29", "2025-02-28", 24),  # leap-day birth, non-leap year: not yet
        ("2000-02-29", "2025-03-01", 25),
        ("2000-02-29", "2024-02-29", 24),  # leap year: on the day
        ("2000-02-29", "2024-02-28", 23),
    ],
)
def test_age(born: str, today: str, expected: int) -> None:
    assert render(f"{{{{ lead.dob | age(today='{today}') }}}}", lead={"dob": born}) == expected


def test_age_with_input_format_and_default_today() -> None:
    assert render("{{ lead.dob_us | age(today='2026-11-28', input_format='M/D/YYYY') }}") == 36
    this_year = datetime.now().year
    assert render("{{ lead.dob | age }}", lead={"dob": f"{this_year - 30}-01-01"}) in {29, 30}


# --- encoding and hashing ---


@given(st.text())
def test_b64_round_trip(text: str) -> None:
    encoded = render("{{ value | b64encode }}", value=text)
    decoded = render("{{ value | b64encode | b64decode }}", value=text)
    if text:
        assert encoded == base64.b64encode(text.encode()).decode()
        assert decoded == text
    else:
        assert encoded is None and decoded is None


def test_b64_details() -> None:
    assert render("{{ 'ann:secret' | b64encode }}") == "YW5uOnNlY3JldA=="
    assert render("{{ 'YW5uOnNlY3JldA' | b64decode }}") == "ann:secret"  # padding left off
    assert render("{{ lead.age | b64encode }}") == "NDI="
    with pytest.raises(TemplateRenderError, match="b64decode: 'not base64!' is not base64"):
        render("{{ 'not base64!' | b64decode }}")
    with pytest.raises(TemplateRenderError, match="not base64 of UTF-8 text"):
        render("{{ '//79' | b64decode }}")  # bytes ff fe fd


@pytest.mark.parametrize("algorithm", ["md5", "sha1", "sha256", "sha512"])
def test_hash_filters(algorithm: str) -> None:
    expected = hashlib.new(algorithm, b"ann@example.com").hexdigest()
    assert render(f"{{{{ lead.email | lower | {algorithm} }}}}") == expected
    assert render(f"{{{{ lead.age | {algorithm} }}}}") == hashlib.new(algorithm, b"42").hexdigest()
    assert render(f"{{{{ lead.empty | {algorithm} }}}}") is None
    assert render(f"h={{{{ lead.nope | {algorithm} }}}}") == "h="


def test_hash_of_non_ascii_text_uses_utf8() -> None:
    assert render("{{ 'Åse' | sha256 }}") == hashlib.sha256("Åse".encode()).hexdigest()


@pytest.mark.parametrize(
    ("args", "algorithm", "encoding"),
    [
        ("('s3cret')", "sha256", "hex"),
        ("('s3cret', 'sha1')", "sha1", "hex"),
        ("('s3cret', 'sha512', 'base64')", "sha512", "base64"),
        ("('s3cret', encoding='base64')", "sha256", "base64"),
    ],
)
def test_hmac_matches_the_standard_library(args: str, algorithm: str, encoding: str) -> None:
    digest = hmac.new(b"s3cret", b'{"email":"ann@example.com"}', algorithm).digest()
    expected = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
    assert render(f"{{{{ body | hmac{args} }}}}", body='{"email":"ann@example.com"}') == expected


def test_hmac_key_from_context() -> None:
    expected = hmac.new(b"k", b"Ann@Example.com", "sha256").hexdigest()
    assert render("{{ lead.email | hmac(secrets.key) }}", secrets={"key": "k"}) == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ lead.email | hmac('') }}", "hmac: the key is empty or missing"),
        ("{{ lead.email | hmac(lead.nope) }}", "hmac: the key is empty or missing"),
        ("{{ lead.email | hmac('k', 'sha999') }}", "hmac: unknown algorithm 'sha999'"),
        (
            "{{ lead.email | hmac('k', encoding='hexx') }}",
            "hmac: unknown encoding 'hexx' \\(use hex or base64\\)",
        ),
    ],
)
def test_hmac_errors(source: str, message: str) -> None:
    with pytest.raises(TemplateRenderError, match=message):
        render(source)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 'a b/c&d=é?' | urlencode }}", "a%20b%2Fc%26d%3D%C3%A9%3F"),
        ("{{ lead.age | urlencode }}", "42"),
        ("{{ lead.nope | urlencode }}", ""),
        ("{{ {'q': 'a b', 'to': 'x/y'} | urlencode }}", "q=a%20b&to=x%2Fy"),
        ("{{ [('q', 'a&b')] | urlencode }}", "q=a%26b"),
    ],
)
def test_urlencode(source: str, expected: str) -> None:
    assert render(source) == expected


def test_urlencode_rejects_a_list_of_non_pairs() -> None:
    with pytest.raises(TemplateRenderError, match="urlencode: a list must hold"):
        render("{{ ['a', 'bcd'] | urlencode }}")


# --- JSON path ---


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("$.data.results[*].score", [0.9, 0.4, 0.7]),
        ("$.data.results[*].id", ["a1", "b2", "c3"]),
        ("$..email", ["x@example.com", "y@example.com"]),
        ("$.data.results[?@.score > 0.5].id", ["a1", "c3"]),
        ("$.data.results[?@.tags[?@ == 'hot']].id", ["a1", "c3"]),
        ("$.data.results[-1].tags[*]", ["warm", "hot"]),
        ("$.data.nothing[*]", []),
    ],
)
def test_jsonpath_on_a_nested_response(expr: str, expected: list[Any]) -> None:
    assert render(f'{{{{ response | jsonpath("{expr}") }}}}', response=RESPONSE) == expected


def test_jsonpath_first() -> None:
    assert render("{{ response | jsonpath_first('$.data.results[*].id') }}", response=RESPONSE) == "a1"
    assert render("{{ response | jsonpath_first('$.data.next') }}", response=RESPONSE) is None
    assert render("{{ response | jsonpath_first('$.missing', 'n/a') }}", response=RESPONSE) == "n/a"
    assert render("{{ response | jsonpath_first('$.missing', default=0) }}", response=RESPONSE) == 0
    assert render("id={{ response | jsonpath_first('$.data.results[1].id') }}", response=RESPONSE) == "id=b2"


def test_jsonpath_on_lists_json_text_and_blank_values() -> None:
    assert render("{{ items | jsonpath('$[*].n') }}", items=[{"n": 1}, {"n": 2}]) == [1, 2]
    assert render("{{ body | jsonpath('$.a[*]') }}", body='{"a": [1, 2]}') == [1, 2]
    assert render("{{ lead.nope | jsonpath('$.a') }}") == []
    assert render("{{ lead.null | jsonpath_first('$.a', 'x') }}") == "x"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ response | jsonpath('$.data[') }}", r"jsonpath: invalid expression '\$.data\[': unexpected end"),
        (
            "{{ response | jsonpath_first('$.a.') }}",
            r"jsonpath: invalid expression '\$.a.': expected a shorthand",
        ),
        ("{{ '{\"a\": 1' | jsonpath('$.a') }}", "jsonpath: the value is text but not valid JSON"),
    ],
)
def test_jsonpath_errors(source: str, message: str) -> None:
    with pytest.raises(TemplateRenderError, match=message):
        render(source, response=RESPONSE)


# --- conditionals ---


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ lead.nope | coalesce(lead.null, lead.empty, lead.phone) }}", "+1 (555) 123-4567"),
        ("{{ lead.email | coalesce(lead.phone) }}", "Ann@Example.com"),
        ("{{ lead.zero | coalesce(7) }}", 0),  # 0 is a value, unlike with `default`
        ("{{ lead.null | coalesce(false) }}", False),
        ("{{ lead.nope | coalesce(lead.null, '') }}", None),
        ("{{ lead.nope | coalesce }}", None),
        ("x={{ lead.null | coalesce(lead.nope, 'fallback') }}", "x=fallback"),
    ],
)
def test_coalesce(source: str, expected: Any) -> None:
    result = render(source)
    assert result == expected
    assert type(result) is type(expected)


# --- numbers ---


@pytest.mark.parametrize(
    ("source", "context", "expected"),
    [
        ("{{ x | int }}", {"x": "12"}, 12),
        ("{{ x | int }}", {"x": " 12 "}, 12),
        ("{{ x | int }}", {"x": "12.9"}, 12),
        ("{{ x | int }}", {"x": "12345678901234567890"}, 12345678901234567890),
        ("{{ x | int }}", {}, None),
        ("{{ x | int }}", {"x": None}, None),
        ("{{ x | int }}", {"x": "n/a"}, None),
        ("{{ x | int(0) }}", {"x": "n/a"}, 0),
        ("{{ x | int }}", {"x": True}, None),
        ("{{ x | float }}", {"x": "45.00"}, 45.0),
        ("{{ x | float }}", {"x": ""}, None),
        ("{{ x | float(45.0) }}", {}, 45.0),
    ],
)
def test_int_and_float_keep_missing_values_missing(
    source: str, context: dict[str, Any], expected: Any
) -> None:
    assert compile_value(source, environment()).render(context) == expected
