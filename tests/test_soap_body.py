"""``soap:`` bodies: 1.1/1.2 envelopes, the action header or parameter, credentials in the header."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree
from test_xml_body import parse, shape, xml_invalid

from streams.bodies.soap_body import SoapBody
from streams.http_types import RequestBuildError

S11 = "http://schemas.xmlsoap.org/soap/envelope/"
S12 = "http://www.w3.org/2003/05/soap-envelope"
PARTNER = "http://partner.example/"
M = "http://partner.example/methods"
CREDENTIALS_HEADER = {
    "AuthHeader": {
        "@xmlns": PARTNER,
        "Username": "{{ settings.user }}",
        "Password": "{{ settings.password }}",
    }
}
SCORE_BODY = {"m:GetScore": {"m:Email": "{{ lead.email }}", "m:Source": "web"}}


def context(**lead: Any) -> dict[str, Any]:
    return {"lead": lead, "settings": {"user": "api-user", "password": 'p&ss<"word>'}}


def soap(raw: dict[str, Any], strict: bool = False, **lead: Any) -> etree._Element:
    return parse(SoapBody(raw, strict).encode(context(**lead)))


def test_soap_11_envelope_with_credentials_in_the_header() -> None:
    raw = {"action": "urn:GetScore", "namespaces": {"m": M}, "header": CREDENTIALS_HEADER, "body": SCORE_BODY}
    body = SoapBody(raw, False)
    root = parse(body.encode(context(email="a@b.c")))
    assert root.nsmap == {"soap": S11, "m": M}
    assert [element.tag for element in root.iter()] == [
        f"{{{S11}}}Envelope",
        f"{{{S11}}}Header",
        f"{{{PARTNER}}}AuthHeader",
        f"{{{PARTNER}}}Username",
        f"{{{PARTNER}}}Password",
        f"{{{S11}}}Body",
        f"{{{M}}}GetScore",
        f"{{{M}}}Email",
        f"{{{M}}}Source",
    ]
    assert shape(root[0][0]) == (
        f"{{{PARTNER}}}AuthHeader",
        [],
        [(f"{{{PARTNER}}}Username", [], []), (f"{{{PARTNER}}}Password", [], [])],
    )
    auth = {"p": PARTNER}
    assert root.xpath("string(//p:Username)", namespaces=auth) == "api-user"
    assert root.xpath("string(//p:Password)", namespaces=auth) == 'p&ss<"word>'
    assert root.xpath("string(//m:Email)", namespaces={"m": M}) == "a@b.c"
    assert body.content_type == body.content_type_for({}) == "text/xml; charset=utf-8"
    assert body.extra_headers({}) == {"SOAPAction": '"urn:GetScore"'}


def test_soap_12_envelope_puts_the_action_in_the_content_type() -> None:
    body = SoapBody(
        {"version": "1.2", "action": "urn:GetScore", "namespaces": {"m": M}, "body": SCORE_BODY}, False
    )
    root = parse(body.encode(context(email="a@b.c")))
    assert root.tag == f"{{{S12}}}Envelope" and root.prefix == "soap"
    assert [child.tag for child in root] == [f"{{{S12}}}Body"]  # no header given, none sent
    assert body.content_type == 'application/soap+xml; charset=utf-8; action="urn:GetScore"'
    assert body.content_type_for({}) == body.content_type
    assert body.extra_headers({}) == {}


def test_yaml_float_version_is_accepted() -> None:
    assert parse(SoapBody({"version": 1.2, "body": {"A": "x"}}, False).encode({})).tag == f"{{{S12}}}Envelope"


def test_templated_action_is_rendered_and_quoted() -> None:
    raw = {"action": "urn:{{ lead.op }}", "body": {"A": "x"}}
    assert SoapBody(raw, False).extra_headers(context(op='Get"Score\\')) == {
        "SOAPAction": '"urn:Get\\"Score\\\\"'
    }
    v12 = SoapBody({**raw, "version": "1.2"}, False)
    assert v12.content_type == "application/soap+xml; charset=utf-8"  # static fallback
    assert v12.content_type_for(context(op="Get")) == 'application/soap+xml; charset=utf-8; action="urn:Get"'


def test_action_defaults_to_empty() -> None:
    assert SoapBody({"body": {"A": "x"}}, False).extra_headers({}) == {"SOAPAction": '""'}
    assert (
        SoapBody({"version": "1.2", "body": {"A": "x"}}, False).content_type
        == "application/soap+xml; charset=utf-8"
    )


@pytest.mark.parametrize("op", ["a\r\nX-Evil: 1", "a\nb", "a\x00"])
def test_action_with_cr_lf_nul_is_refused(op: str) -> None:
    raw = {"action": "urn:{{ lead.op }}", "body": {"A": "x"}}
    with pytest.raises(RequestBuildError, match="SOAPAction"):
        SoapBody(raw, False).extra_headers(context(op=op))
    with pytest.raises(RequestBuildError, match="SOAPAction"):
        SoapBody({**raw, "version": "1.2"}, False).content_type_for(context(op=op))


def test_template_header_and_body_use_the_envelope_namespaces() -> None:
    raw = {
        "namespaces": {"m": M, "p": PARTNER},
        "header": "<p:Auth><p:Token>{{ settings.password }}</p:Token></p:Auth>",
        "body": '\n  <m:GetScore id="{{ lead.id }}"><m:Email>{{ lead.email }}</m:Email></m:GetScore>\n',
    }
    data = SoapBody(raw, False).encode(context(id='1"2', email="<a@b.c>"))
    assert data.count(b"xmlns:") == 3  # declared once, on the envelope
    root = parse(data)
    assert root.xpath("string(//p:Token)", namespaces={"p": PARTNER}) == 'p&ss<"word>'
    assert root.xpath("string(//m:GetScore/@id)", namespaces={"m": M}) == '1"2'
    assert root.xpath("string(//m:Email)", namespaces={"m": M}) == "<a@b.c>"


def test_template_body_must_be_well_formed() -> None:
    with pytest.raises(RequestBuildError, match="Body"):
        SoapBody({"body": "<A>{{ lead.x }}</B>"}, False).encode(context(x=1))
    with pytest.raises(RequestBuildError, match="Body"):
        SoapBody({"body": "<q:A/>"}, False).encode({})  # undeclared prefix


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"action": "x"}, "body"),
        ("<A/>", "body"),
        ({"body": {"A": "x"}, "version": "2"}, "version"),
        ({"body": {"A": "x"}, "bogus": 1}, "unknown keys"),
        ({"body": {"A": "x"}, "namespaces": {"soap": "http://x/"}}, "reserved"),
        ({"body": {"A": "x"}, "namespaces": {"1m": "http://x/"}}, "prefix"),
        ({"body": ["A"]}, "structure"),
        ({"body": {"m:A": "x"}}, "prefix 'm' is not declared"),
    ],
)
def test_invalid_soap_bodies_are_refused_at_load(raw: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SoapBody(raw, False)


@given(st.text(), st.sampled_from(["1.1", "1.2"]), st.booleans())
def test_property_soap_values_exact_or_refused(value: str, version: str, as_template: bool) -> None:
    body = "<m:GetScore><m:Email>{{ lead.email }}</m:Email></m:GetScore>" if as_template else SCORE_BODY
    raw = {"version": version, "namespaces": {"m": M}, "header": CREDENTIALS_HEADER, "body": body}
    ctx = {"lead": {"email": value}, "settings": {"user": value, "password": f"<{value}>"}}
    try:
        root = parse(SoapBody(raw, False).encode(ctx))
    except RequestBuildError:
        assert xml_invalid(value)
        return
    assert not xml_invalid(value)
    soap_ns = S11 if version == "1.1" else S12
    assert [child.tag for child in root] == [f"{{{soap_ns}}}Header", f"{{{soap_ns}}}Body"]
    ns = {"p": PARTNER, "m": M}
    assert [child.tag for child in root[1]] == [f"{{{M}}}GetScore"]
    assert root.xpath("string(//p:Username)", namespaces=ns) == value
    assert root.xpath("string(//p:Password)", namespaces=ns) == f"<{value}>"
    assert root.xpath("string(//m:Email)", namespaces=ns) == value
    assert len(root.xpath("//*")) == (8 if as_template else 9)  # no element added or lost
