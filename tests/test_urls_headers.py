"""URLs, query strings, headers and bodies built from lead values: always encoded, never injected."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from streams.bodies.form_body import FormBody
from streams.bodies.json_body import JsonBody
from streams.headers import header_value
from streams.http_types import RequestBuildError
from streams.templates import TemplateRenderError, compile_value, environment
from streams.urls import add_query, encode_path_value, join_url

# Lead values come from JSON, which cannot carry lone surrogates.
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))
BASE = "https://partner.example/api/v1"


def path_for(template: str, where: str = "", **lead: Any) -> URL:
    rendered = compile_value(template, environment(False, encode_path_value), where).render({"lead": lead})
    return join_url(BASE, str(rendered))


def test_join_url_keeps_the_base_path() -> None:
    assert str(join_url(BASE, "/leads")) == "https://partner.example/api/v1/leads"
    assert str(join_url(BASE + "/", "leads")) == "https://partner.example/api/v1/leads"


def test_join_url_absolute_url_wins_over_base() -> None:
    assert str(join_url(BASE, "http://other.example/x?y=1")) == "http://other.example/x?y=1"
    assert str(join_url(None, "https://other.example/x")) == "https://other.example/x"


def test_join_url_relative_without_base_is_refused() -> None:
    with pytest.raises(RequestBuildError, match="base_url"):
        join_url(None, "/leads")


@pytest.mark.parametrize("url", ["ftp://files.example/x", "file:///etc/passwd", "javascript://x/alert"])
def test_join_url_refuses_non_http_schemes(url: str) -> None:
    with pytest.raises(RequestBuildError):
        join_url(BASE, url)


def test_path_values_are_encoded_as_one_segment() -> None:
    url = path_for("/leads/{{ lead.id }}/check", id="a/b?c=1#frag d")
    assert url.raw_path == "/api/v1/leads/a%2Fb%3Fc%3D1%23frag%20d/check"
    assert url.parts == ("/", "api", "v1", "leads", "a/b?c=1#frag d", "check")
    assert url.query_string == ""
    assert url.fragment == ""


def test_a_lead_value_cannot_replace_the_host() -> None:
    url = path_for("{{ lead.next }}", next="http://evil.example/steal")
    assert url.host == "partner.example"


@pytest.mark.parametrize("value", [".", ".."])
def test_dot_segment_values_are_a_template_error(value: str) -> None:
    # Issue #16.7: "%2E%2E" was sent, which RFC 3986 normalises back to "..".
    template = "/leads/{{ lead.id }}/check"
    with pytest.raises(
        TemplateRenderError, match=r"steps\.0\.request\.url: /leads/\{\{ lead\.id \}\}/check: .*dot segment"
    ):
        path_for(template, where="f.yaml:3: steps.0.request.url", id=value)


@pytest.mark.parametrize("lead", [{}, {"id": None}, {"id": ""}])
def test_missing_path_value_is_a_template_error_not_a_double_slash(lead: dict[str, Any]) -> None:
    # Issue #16.7: a missing field produced /v2/leads//validate.
    template = "/v2/leads/{{ lead.id }}/validate"
    with pytest.raises(
        TemplateRenderError, match=r"/v2/leads/\{\{ lead\.id \}\}/validate: .*(missing|empty)"
    ):
        path_for(template, **lead)


def test_dots_inside_a_value_are_plain_text() -> None:
    assert path_for("/leads/{{ lead.id }}", id="a.b..c").raw_path == "/api/v1/leads/a.b..c"


def test_add_query_merges_with_existing_query() -> None:
    url = add_query(URL("https://p.example/x?a=1"), {"b": "two words", "c": "x&y=z"})
    assert list(url.query.items()) == [("a", "1"), ("b", "two words"), ("c", "x&y=z")]


def test_add_query_lists_repeat_none_omitted_bools_lowercase() -> None:
    url = add_query(URL("https://p.example/x"), {"tag": ["a", "b"], "gone": None, "ok": True, "no": False})
    assert url.query.getall("tag") == ["a", "b"]
    assert "gone" not in url.query
    assert (url.query["ok"], url.query["no"]) == ("true", "false")


def test_query_key_replaces_the_same_key_in_the_url() -> None:
    # Issue #16.6: "?source=web&type=auto&source=123".
    url = add_query(URL("https://p.example/search?source=web&type=auto"), {"source": 123})
    assert url.raw_query_string == "type=auto&source=123"


def test_query_list_replaces_every_value_of_the_key() -> None:
    url = add_query(URL("https://p.example/x?tag=old&a=%2B1+2&tag=older"), {"tag": ["n1", "n2"]})
    assert url.raw_query_string == "a=%2B1+2&tag=n1&tag=n2"  # the URL's own spelling is kept


def test_fallback_url_keeps_its_own_keys_and_gets_the_query_once() -> None:
    # Issue #16.6: the fallback got "?fail=0&key=secondary&fail=5&key=E…".
    fallback = URL("https://secondary.example/v1/check?fail=0&key=secondary#top", encoded=True)
    url = add_query(fallback, {"fail": "5", "key": "E1-primary-key", "email": "a@b.c"}, url_wins=True)
    assert str(url) == "https://secondary.example/v1/check?fail=0&key=secondary&email=a@b.c#top"


def test_add_query_without_params_is_unchanged() -> None:
    url = URL("https://p.example/x?a=1")
    assert add_query(url, {"gone": None}) == url


@pytest.mark.parametrize("bad", ["a\r\nEvil: 1", "a\nb", "a\rb", "a\x00b"])
def test_header_value_refuses_cr_lf_nul(bad: str) -> None:
    with pytest.raises(RequestBuildError, match="X-Test"):
        header_value("X-Test", bad)


def test_header_value_renders_scalars() -> None:
    assert header_value("X", None) == ""
    assert header_value("X", True) == "true"
    assert header_value("X", False) == "false"
    assert header_value("X", 12) == "12"


@given(TEXT)
def test_property_path_value_is_exactly_one_segment(value: str) -> None:
    if value in {"", ".", ".."}:
        with pytest.raises(TemplateRenderError):
            path_for("/leads/{{ lead.id }}/check", id=value)
        return
    url = path_for("/leads/{{ lead.id }}/check", id=value)
    assert url.parts == ("/", "api", "v1", "leads", value, "check")
    assert url.raw_path.count("/") == 5
    assert url.raw_query_string == "" and url.raw_fragment == ""
    assert url.host == "partner.example"


@given(TEXT)
def test_property_query_value_round_trips(value: str) -> None:
    url = add_query(URL("https://p.example/x?a=1"), {"q": value})
    reparsed = URL(str(url), encoded=True)
    assert reparsed.query["q"] == value
    assert list(reparsed.query.keys()) == ["a", "q"]
    assert reparsed.path == "/x"


@given(TEXT)
def test_property_json_body_round_trips(value: str) -> None:
    body = JsonBody({"email": "{{ lead.v }}", "nested": {"text": "x{{ lead.v }}", "n": 1}}, False)
    decoded = orjson.loads(body.encode({"lead": {"v": value}}))
    assert decoded == {"email": value, "nested": {"text": "x" + value, "n": 1}}


@given(TEXT)
def test_property_header_value_exact_or_refused(value: str) -> None:
    unsafe = any(c in value for c in "\r\n\x00") or not value.isascii()
    try:
        result = header_value("X-Lead", value)
    except RequestBuildError:
        assert unsafe
    else:
        assert not unsafe
        assert result == value


def test_non_ascii_header_value_is_refused_naming_the_header() -> None:
    with pytest.raises(RequestBuildError, match=r"'X-Customer' refused: .*non-ASCII"):
        header_value("X-Customer", "José")


@pytest.mark.parametrize(
    ("name", "value", "sent"),
    [
        (
            "Content-Disposition",
            'attachment; filename="Crème brûlée.pdf"',
            "attachment; filename*=utf-8''Cr%C3%A8me%20br%C3%BBl%C3%A9e.pdf",
        ),
        (
            "content-disposition",
            "inline; filename=José.txt; size=3",
            "inline; filename*=utf-8''Jos%C3%A9.txt; size=3",
        ),
        (
            "Link",
            '<https://p.example/a>; rel="next"; title="Ünïcode"',
            "<https://p.example/a>; rel=\"next\"; title*=utf-8''%C3%9Cn%C3%AFcode",
        ),
    ],
)
def test_non_ascii_parameters_are_encoded_per_rfc_8187(name: str, value: str, sent: str) -> None:
    assert header_value(name, value) == sent


def test_non_ascii_outside_a_parameter_is_refused_even_where_parameters_are_encoded() -> None:
    with pytest.raises(RequestBuildError, match="'Link' refused"):
        header_value("Link", "<https://p.example/é>; rel=next")


@given(TEXT)
def test_property_rfc_8187_parameter_round_trips(value: str) -> None:
    if any(c in value for c in "\r\n\x00"):
        return
    quoted = value.replace("\\", "\\\\").replace('"', '\\"')
    sent = header_value("Content-Disposition", f'attachment; filename="{quoted}"')
    assert sent.isascii()
    if value.isascii():
        assert sent == f'attachment; filename="{quoted}"'
    else:
        prefix = "attachment; filename*=utf-8''"
        assert sent.startswith(prefix) and unquote(sent[len(prefix) :]) == value


@given(TEXT, TEXT)
def test_property_form_body_round_trips(first: str, second: str) -> None:
    body = FormBody({"a": "{{ lead.a }}", "b": ["{{ lead.b }}", "fixed"]}, False)
    encoded = body.encode({"lead": {"a": first, "b": second}}).decode("ascii")
    assert parse_qs(encoded, keep_blank_values=True) == {"a": [first], "b": [second, "fixed"]}


def test_form_body_omits_none_and_renders_bools() -> None:
    body = FormBody({"gone": "{{ lead.nope }}", "ok": "{{ lead.ok }}"}, False)
    assert body.encode({"lead": {"ok": True}}) == b"ok=true"
