"""XML/SOAP responses: XPath from templates, SOAP faults, and hostile documents refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from streams.responses.xml_format import XmlResponse, parse_xml, safe_parser
from streams.templates import TemplateRenderError, compile_value, environment

SCORE = b"""<?xml version="1.0" encoding="UTF-8"?>
<Result status="ok">
  <Score>
    42
  </Score>
  <Tag>a</Tag><Tag>b</Tag>
  <Note>multi <b>part</b> text</Note>
  <!-- partner comment -->
</Result>"""
SOAP11 = b"""<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
  <soap:Body><m:GetScoreResponse xmlns:m="http://partner.example/m">
    <m:Score>87</m:Score></m:GetScoreResponse></soap:Body></soap:Envelope>"""
SOAP12_DEFAULT_NS = b"""<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope">
  <env:Body><GetScoreResponse xmlns="http://partner.example/m"><Score>91</Score></GetScoreResponse></env:Body>
</env:Envelope>"""
FAULT11 = b"""<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>
  <soap:Fault><faultcode>soap:Client</faultcode><faultstring> Invalid email </faultstring></soap:Fault>
</soap:Body></soap:Envelope>"""
FAULT12 = b"""<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><s:Fault>
  <s:Code><s:Value>s:Sender</s:Value></s:Code>
  <s:Reason><s:Text xml:lang="en">Quota exceeded</s:Text><s:Text xml:lang="fr">Quota</s:Text></s:Reason>
</s:Fault></s:Body></s:Envelope>"""


def render(template: str, response: Any) -> Any:
    return compile_value(template, environment(True)).render({"response": response})


def test_xpath_normalises_results() -> None:
    response = parse_xml(SCORE)
    assert response.xpath("//Score") == "42"  # one element: its text, stripped
    assert response.xpath("/Result/Tag") == ["a", "b"]
    assert response.xpath("//Note") == "multi part text"
    assert response.xpath("/Result/@status") == "ok"
    assert response.xpath("//Tag/text()") == ["a", "b"]
    assert response.xpath("count(//Tag)") == 2.0
    assert response.xpath("boolean(//Score)") is True
    assert response.xpath("string(//Tag)") == "a"
    assert response.xpath("//comment()") == "partner comment"
    assert response.xpath("//Missing") is None


def test_xpath_results_are_plain_python_values() -> None:
    response = parse_xml(SCORE)
    for expr in ("//Score", "/Result/@status", "string(//Tag)", "//Tag/text()"):
        result = response.xpath(expr)
        items = result if isinstance(result, list) else [result]
        assert all(type(item) is str for item in items), expr  # no lxml smart strings (getparent())


def test_xpath_on_soap_with_document_and_soap_prefixes() -> None:
    response = parse_xml(SOAP11)
    assert response.xpath("//m:Score") == "87"  # prefix declared deep in the document
    assert response.xpath("/soap:Envelope/soap:Body/m:GetScoreResponse/m:Score") == "87"
    assert response.xpath("/soap11:Envelope/soap11:Body//m:Score") == "87"
    assert response.xpath("/soap12:Envelope") is None
    assert response.fault is None


def test_xpath_on_soap_12_and_a_default_namespace() -> None:
    response = parse_xml(SOAP12_DEFAULT_NS)
    assert response.xpath("/soap:Envelope/soap:Body") == "91"  # soap follows the envelope's version
    assert response.xpath("//env:Body") == "91"
    assert response.xpath("//Score") is None  # in the default namespace: needs a prefix
    assert response.xpath("//p:Score", {"p": "http://partner.example/m"}) == "91"
    assert response.xpath("//*[local-name()='Score']") == "91"


def test_explicit_namespaces_override_the_defaults() -> None:
    response = parse_xml(SOAP11)
    assert response.xpath("//m:Score", {"m": "http://other.example/"}) is None


def test_invalid_xpath_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="XPath"):
        parse_xml(SCORE).xpath("//[")
    with pytest.raises(ValueError, match="XPath"):
        parse_xml(SCORE).xpath("//undeclared:x")


def test_text_and_str_are_the_raw_body() -> None:
    response = parse_xml(SCORE)
    assert response.text == str(response) == SCORE.decode()
    assert type(response.text) is str and type(str(response)) is str
    latin = "<?xml version='1.0' encoding='ISO-8859-1'?><A>é</A>"
    assert parse_xml(latin.encode("latin-1")).text == latin


@pytest.mark.parametrize(
    ("body", "fault"),
    [(FAULT11, "Invalid email"), (FAULT12, "Quota exceeded"), (SOAP11, None), (SCORE, None)],
)
def test_soap_fault(body: bytes, fault: str | None) -> None:
    assert parse_xml(body).fault == fault


def test_fault_without_a_reason_falls_back_to_its_code() -> None:
    body = FAULT11.replace(b"<faultstring> Invalid email </faultstring>", b"")
    assert parse_xml(body).fault == "soap:Client"
    bare = b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><s:Fault/></s:Body></s:Envelope>'
    assert parse_xml(bare).fault == "SOAP Fault"


def test_usable_from_sandboxed_templates() -> None:
    response = parse_xml(SCORE)
    assert render("{{ response.xpath('//Result/Score') }}", response) == "42"
    assert render("{{ response.xpath('//Tag') | join(',') }}", response) == "a,b"
    assert render("{{ response.xpath('//Score') | int > 40 }}", response) is True
    assert render("score={{ response.xpath('//Score') }}", response) == "score=42"
    assert render("{{ response.fault }}", parse_xml(FAULT12)) == "Quota exceeded"
    assert render("{{ response.text | length }}", response) == len(SCORE.decode())
    assert (
        render(
            "{{ response.xpath('//p:Score', {'p': 'http://partner.example/m'}) }}",
            parse_xml(SOAP12_DEFAULT_NS),
        )
        == "91"
    )


def test_templates_cannot_reach_the_lxml_tree() -> None:
    with pytest.raises(TemplateRenderError, match="unsafe"):
        render("{{ response._root }}", parse_xml(SCORE))


def test_empty_body_has_no_document() -> None:
    response = parse_xml(b"  \n")
    assert isinstance(response, XmlResponse)
    assert response.xpath("//x") is None and response.fault is None and response.text == "  \n"


@pytest.mark.parametrize("body", [b"not xml", b"<a><b></a>", b"<a>&undeclared;</a>", b"<a/><b/>"])
def test_malformed_xml_is_a_value_error(body: bytes) -> None:
    with pytest.raises(ValueError, match="not well-formed XML"):
        parse_xml(body)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("TOP-SECRET-42")
    return path


def xxe_documents(secret: Path) -> list[bytes]:
    uri = secret.as_uri()
    return [
        f'<!DOCTYPE r [<!ENTITY x SYSTEM "{uri}">]><r>&x;</r>'.encode(),
        b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
        f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{uri}"> %p;]><r>x</r>'.encode(),
        f'<!DOCTYPE r [<!ENTITY x SYSTEM "{uri}">]><r a="1">&x;</r>'.encode(),
    ]


def test_xxe_fixture_really_leaks_through_a_naive_parser(secret: Path) -> None:
    naive = etree.XMLParser(resolve_entities=True, load_dtd=True)
    assert etree.fromstring(xxe_documents(secret)[0], naive).text == "TOP-SECRET-42"


def test_xxe_is_refused_and_leaks_nothing(secret: Path) -> None:
    for document in xxe_documents(secret):
        with pytest.raises(ValueError, match="entity") as refused:
            parse_xml(document)
        assert "TOP-SECRET" not in str(refused.value) and "root:" not in str(refused.value)


def test_external_dtd_is_not_loaded(secret: Path) -> None:
    response = parse_xml(f'<!DOCTYPE r SYSTEM "{secret.as_uri()}"><r>x</r>'.encode())
    assert response.xpath("/r") == "x"
    assert "TOP-SECRET" not in str(response.xpath("string(/)"))


def laughs(depth: int) -> bytes:
    levels = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, depth)
    ]
    return f"<!DOCTYPE lolz [{''.join(levels)}]><lolz>&lol{depth - 1};</lolz>".encode()


def test_billion_laughs_is_refused() -> None:
    with pytest.raises(ValueError, match=r"entity declarations .* refused"):
        parse_xml(laughs(10))
    # libxml2 itself stops at its amplification limit: nothing near 10^9 "lol"s is ever built.
    with pytest.raises(etree.XMLSyntaxError, match="amplification"):
        etree.fromstring(laughs(10), safe_parser())


def test_small_laughs_are_refused_after_a_parse_that_expanded_nothing() -> None:
    with pytest.raises(ValueError, match=r"entity declarations .* refused"):
        parse_xml(laughs(3))
    tree = etree.fromstring(laughs(3), safe_parser())  # what the refusal looked at
    assert etree.tostring(tree) == b"<lolz>&lol2;</lolz>"  # a reference, never its 100 "lol"s
