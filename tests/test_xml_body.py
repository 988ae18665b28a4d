"""``xml:`` bodies: lead values are escaped (templates) or set through lxml (structures), never injected."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from streams.bodies.xml_body import XmlBody
from streams.http_types import RequestBuildError
from streams.templates import TemplateRenderError

# Any text, lone surrogates and control characters included: they must be refused, not sent.
ANY_TEXT = st.text()
TEMPLATE = (
    '<Lead id="{{ lead.v }}" kind="x{{ lead.v }}y">'
    "<Name>{{ lead.v }}</Name><Note>a{{ lead.v }}b</Note><Empty/>"
    "</Lead>"
)
STRUCTURE = {
    "Lead": {
        "@id": "{{ lead.v }}",
        "Name": "{{ lead.v }}",
        "Note": "a{{ lead.v }}b",
        "Tags": {"Tag": ["{{ lead.v }}", "fixed"]},
        "Own": {"@k": "x{{ lead.v }}", "#text": "{{ lead.v }}"},
    }
}


def xml_invalid(text: str) -> bool:
    """XML 1.0 ``Char``, written independently of the implementation."""
    return any(
        not (c in "\t\n\r" or 0x20 <= ord(c) <= 0xD7FF or 0xE000 <= ord(c) <= 0xFFFD or ord(c) >= 0x10000)
        for c in text
    )


def parse(data: bytes) -> etree._Element:
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>") or data.startswith(b"<?xml")
    return etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))


def shape(element: etree._Element) -> tuple[Any, ...]:
    """Element structure without the values: tags, attribute names, children."""
    return (element.tag, sorted(element.attrib), [shape(child) for child in element])


def encode(raw: Any, strict: bool = False, **lead: Any) -> etree._Element:
    return parse(XmlBody(raw, strict).encode({"lead": lead}))


def test_template_escapes_markup_in_text_and_attributes() -> None:
    value = "</Name><Admin>1</Admin>&amp;\"'"
    root = encode(TEMPLATE, v=value)
    assert shape(root) == ("Lead", ["id", "kind"], [("Name", [], []), ("Note", [], []), ("Empty", [], [])])
    assert root.get("id") == value and root.get("kind") == f"x{value}y"
    assert root.findtext("Name") == value and root.findtext("Note") == f"a{value}b"


def test_template_whitespace_round_trips_in_attributes() -> None:
    root = encode(TEMPLATE, v="a\tb\nc\rd")
    assert root.get("id") == "a\tb\nc\rd"  # a parser would turn raw tab/LF/CR into spaces here
    assert root.findtext("Name") == "a\tb\nc\rd"


def test_template_scalars_none_and_bools() -> None:
    root = encode(
        "<A><B>{{ lead.n }}</B><C>{{ lead.t }}</C><D>{{ lead.f }}</D><E>{{ lead.i }}</E></A>",
        n=None,
        t=True,
        f=False,
        i=12,
    )
    assert [root.findtext(tag) for tag in "BCDE"] == ["", "true", "false", "12"]


def test_template_gets_a_declaration_or_keeps_its_own() -> None:
    data = XmlBody("<A>{{ lead.v }}</A>", False).encode({"lead": {"v": "é"}})
    assert data == "<?xml version='1.0' encoding='UTF-8'?>\n<A>é</A>".encode()
    own = XmlBody('\n<?xml version="1.0" encoding="utf-8"?>\n<A/>', False).encode({})
    assert own == b'<?xml version="1.0" encoding="utf-8"?>\n<A/>'


def test_template_declaring_another_encoding_is_refused_at_load() -> None:
    with pytest.raises(ValueError, match="ISO-8859-1"):
        XmlBody('<?xml version="1.0" encoding="ISO-8859-1"?><A/>', False)


def test_template_that_renders_malformed_xml_is_refused() -> None:
    body = XmlBody("<A>{% if lead.open %}<B>{% endif %}</A>", False)
    with pytest.raises(RequestBuildError, match="well-formed"):
        body.encode({"lead": {"open": True}})


@pytest.mark.parametrize("bad", ["\x00", "\x01", "\x1f", "\x0b", "\ufffe", "\uffff", "\ud800", "\udfff"])
@pytest.mark.parametrize("raw", [TEMPLATE, STRUCTURE], ids=["template", "structure"])
def test_invalid_xml_characters_are_refused(raw: Any, bad: str) -> None:
    with pytest.raises(RequestBuildError, match=f"U\\+{ord(bad):04X}"):
        XmlBody(raw, False).encode({"lead": {"v": f"ok{bad}ok"}})


def test_strict_template_refuses_undefined_values() -> None:
    with pytest.raises(TemplateRenderError, match="missing"):
        XmlBody("<A>{{ lead.missing }}</A>", True).encode({"lead": {}})
    with pytest.raises(TemplateRenderError, match="missing"):
        XmlBody({"A": "{{ lead.missing }}"}, True).encode({"lead": {}})


def test_structure_builds_elements_attributes_text_and_lists() -> None:
    root = encode(
        {
            "Lead": {
                "@id": "{{ lead.id }}",
                "Name": "{{ lead.name }}",
                "Tag": ["a", "{{ lead.tag }}"],
                "Address": {"City": "Paris", "Zip": 75001},
                "Note": {"@lang": "en", "#text": "hi {{ lead.name }}"},
                "Consent": "{{ lead.consent }}",
                "Optional": "{{ lead.missing }}",
                "Score": 1.5,
            }
        },
        id=7,
        name="Ann",
        tag="b",
        consent=False,
    )
    assert etree.tostring(root) == (
        b'<Lead id="7"><Name>Ann</Name><Tag>a</Tag><Tag>b</Tag>'
        b"<Address><City>Paris</City><Zip>75001</Zip></Address>"
        b'<Note lang="en">hi Ann</Note><Consent>false</Consent><Optional/><Score>1.5</Score></Lead>'
    )


def test_structure_lone_expression_list_repeats_the_element() -> None:
    root = encode(
        {"Lead": {"Tag": "{{ lead.tags }}", "Empty": "{{ lead.none }}"}}, tags=["x", "<y>"], none=None
    )
    assert [tag.text for tag in root.findall("Tag")] == ["x", "<y>"]
    assert root.find("Empty") is not None and root.find("Empty").text is None


def test_structure_value_rendering_a_mapping_is_refused() -> None:
    with pytest.raises(RequestBuildError, match="scalars"):
        XmlBody({"Lead": {"Name": "{{ lead.obj }}"}}, False).encode({"lead": {"obj": {"a": 1}}})
    with pytest.raises(RequestBuildError, match="root"):
        XmlBody({"Lead": "{{ lead.tags }}"}, False).encode({"lead": {"tags": ["a", "b"]}})


def test_structure_namespaces_prefixed_default_and_xml() -> None:
    root = encode(
        {
            "p:Lead": {
                "@xmlns:p": "http://partner.example/lead",
                "@p:version": "2",
                "@xml:lang": "fr",
                "p:Name": "Ann",
                "Contact": {"@xmlns": "http://partner.example/contact", "Email": "a@b.c"},
            }
        }
    )
    assert root.tag == "{http://partner.example/lead}Lead"
    assert root.get("{http://partner.example/lead}version") == "2"
    assert root.get("{http://www.w3.org/XML/1998/namespace}lang") == "fr"
    assert root.findtext("{http://partner.example/lead}Name") == "Ann"
    email = root.find("{http://partner.example/contact}Contact/{http://partner.example/contact}Email")
    assert email is not None and email.text == "a@b.c"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"1Lead": "x"}, "invalid XML element name"),
        ({"Lead": {"bad name": "x"}}, "invalid XML element name"),
        ({"Lead": {"@a<b": "x"}}, "invalid XML attribute name"),
        ({"p:Lead": "x"}, "prefix 'p' is not declared"),
        ({"Lead": {"q:Child": "x"}}, "prefix 'q' is not declared"),
        ({"Lead": {"@xmlns:p": "{{ lead.ns }}", "p:A": "x"}}, "literal"),
        ({"Lead": {"@xmlns:p": ""}}, "literal, non-empty"),
        ({"Lead": {"@xmlns:1p": "http://x/"}}, "invalid namespace prefix"),
        ({"Lead": {"@xmlns": "not a uri"}}, "Invalid namespace URI"),
        ({"Lead": {"#tail": "x"}}, "unknown key"),
        ({"Lead": {"#text": {"a": 1}}}, "scalar"),
        ({"Lead": {"@id": ["a"]}}, "scalar"),
        ({"Lead": {"A": [["nested"]]}}, "list"),
        ({"A": 1, "B": 2}, "exactly one root"),
        ({"Lead": ["a", "b"]}, "list"),
        (["<A/>"], "exactly one root"),
    ],
)
def test_structure_errors_are_found_at_load(raw: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        XmlBody(raw, False)


def test_body_interface() -> None:
    body = XmlBody("<A/>", False)
    assert body.content_type == "application/xml; charset=utf-8"
    assert body.content_type_for({}) == body.content_type
    assert body.extra_headers({}) == {}


@given(ANY_TEXT)
def test_property_template_value_exact_or_refused(value: str) -> None:
    try:
        root = encode(TEMPLATE, v=value)
    except RequestBuildError:
        assert xml_invalid(value)
        return
    assert not xml_invalid(value)
    assert shape(root) == ("Lead", ["id", "kind"], [("Name", [], []), ("Note", [], []), ("Empty", [], [])])
    assert (root.get("id"), root.get("kind")) == (value, f"x{value}y")
    assert (root.findtext("Name"), root.findtext("Note"), root.findtext("Empty")) == (value, f"a{value}b", "")


@given(ANY_TEXT)
def test_property_structure_value_exact_or_refused(value: str) -> None:
    try:
        root = encode(STRUCTURE, v=value)
    except RequestBuildError:
        assert xml_invalid(value)
        return
    assert not xml_invalid(value)
    assert shape(root) == (
        "Lead",
        ["id"],
        [
            ("Name", [], []),
            ("Note", [], []),
            ("Tags", [], [("Tag", [], []), ("Tag", [], [])]),
            ("Own", ["k"], []),
        ],
    )
    assert root.get("id") == value
    assert (root.findtext("Name"), root.findtext("Note")) == (value, f"a{value}b")
    assert [tag.text or "" for tag in root.iterfind("Tags/Tag")] == [value, "fixed"]
    assert (root.find("Own").get("k"), root.findtext("Own")) == (f"x{value}", value)
