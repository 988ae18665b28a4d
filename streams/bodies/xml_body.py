"""``xml:`` bodies: a string template with XML-escaped values, or a structure built by lxml.

String template
    Every ``{{ }}`` output is escaped (``& < > " '``, plus tab/LF/CR as ``&#9;``/``&#10;``/``&#13;``
    so values round-trip in attributes too, where a parser would otherwise turn them into spaces).
    The rendered document must be well-formed (checked by parsing it) and gets an XML declaration
    if it has none. Escaping does not help inside ``<![CDATA[…]]>``: do not put values there.

Structure (a mapping with exactly one root key)
    ``{"Lead": {"@id": "{{ lead.id }}", "Name": "{{ lead.name }}", "Tag": ["a", "b"]}}`` gives
    ``<Lead id="…"><Name>…</Name><Tag>a</Tag><Tag>b</Tag></Lead>``. Keys are element names
    (``prefix:name`` allowed), ``@name`` keys attributes, ``#text`` the element's own text (before
    its children). A list repeats the element, a mapping is a child element, a scalar is text
    (``true``/``false`` for booleans, an empty element for None); a lone ``{{ expr }}`` that renders
    a list repeats the element too. Namespaces are declared in place with ``@xmlns`` (default)
    and ``@xmlns:prefix`` keys (literal URIs); an unprefixed element name takes the default
    namespace in scope, an unprefixed attribute has none (XML rules); ``xml:`` is predeclared.
    Names and prefixes are checked when the flow loads (ValueError); values are set through lxml,
    which does the escaping.

Either way, a value holding a character XML 1.0 cannot carry (C0 controls other than tab/LF/CR,
lone surrogates, U+FFFE/U+FFFF) raises ``RequestBuildError``: the request is refused rather than
sent malformed. The output is UTF-8 with an XML declaration.

``compile_element`` and ``XmlTemplate`` are also the building blocks of ``soap_body``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from xml.sax.saxutils import quoteattr

from lxml import etree

from streams.bodies import Body
from streams.http_types import RequestBuildError
from streams.responses.xml_format import parse_document
from streams.templates import Context, Value, compile_value, environment
from streams.urls import scalar_text

XML_NS = "http://www.w3.org/XML/1998/namespace"
XML_DECLARATION = "<?xml version='1.0' encoding='UTF-8'?>\n"
_INVALID_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}
    | {"\t": "&#9;", "\n": "&#10;", "\r": "&#13;"}
)
_NAME_START = (
    "A-Z_a-z\xc0-\xd6\xd8-\xf6\xf8-\u02ff\u0370-\u037d\u037f-\u1fff\u200c\u200d\u2070-\u218f"
    "\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf\ufdf0-\ufffd\U00010000-\U000effff"
)
_NCNAME = re.compile(f"[{_NAME_START}][{_NAME_START}\\-.0-9\xb7\u0300-\u036f\u203f\u2040]*")
_DECLARED_ENCODING = re.compile(r"""^\s*<\?xml[^>]*\bencoding\s*=\s*["']([^"']*)["']""")

Namespaces = Mapping[str | None, str]


def xml_escape(value: Any) -> str:
    """Jinja ``finalize`` hook for XML templates (module-level: the environment is cached by it)."""
    if value is None:
        return ""
    return scalar_text(value).translate(_ESCAPES)


def check_xml_chars(text: str, where: str) -> str:
    found = _INVALID_CHAR.search(text)
    if found:
        raise RequestBuildError(
            f"{where}: character U+{ord(found.group()):04X} cannot appear in XML 1.0 (from a lead value?)"
        )
    return text


class XmlTemplate:
    """A string template whose ``{{ }}`` outputs are XML-escaped."""

    def __init__(self, raw: str, strict: bool) -> None:
        self.value = compile_value(raw, environment(strict, xml_escape))

    def render(self, context: Context) -> str:
        return check_xml_chars(str(self.value.render(context)), "XML body")

    def fill(self, element: etree._Element, context: Context) -> None:
        """Parse the rendered fragment as ``element``'s content, with its in-scope namespaces."""
        declarations = "".join(
            f" xmlns{':' + prefix if prefix else ''}={quoteattr(uri)}"
            for prefix, uri in element.nsmap.items()
        )
        wrapped = f"<fragment{declarations}>{self.render(context)}</fragment>"
        try:
            parsed = parse_document(wrapped.encode())
        except ValueError as exc:
            raise RequestBuildError(f"XML inside <{etree.QName(element).localname}>: {exc}") from None
        element.text = parsed.text
        element.extend(list(parsed))  # moves the children; lxml reuses the in-scope declarations


@dataclass(frozen=True)
class XmlElement:
    """A compiled element: names resolved to Clark notation, values compiled to templates."""

    tag: str
    label: str  # the name as the flow wrote it, for messages
    nsmap: dict[str | None, str]
    attributes: tuple[tuple[str, str, Value], ...]  # (clark name, label, value)
    text: Value | None
    spread: bool  # scalar shorthand: a rendered list repeats the element
    children: tuple[XmlElement, ...] = ()
    fragment: XmlTemplate | None = None

    def build(self, parent: etree._Element | None, context: Context) -> list[etree._Element]:
        """Create this element (several if ``spread`` and the value is a list) under ``parent``."""
        value = self.text.render(context) if self.text is not None else None
        items = value if self.spread and isinstance(value, list | tuple) else [value]
        return [self._one(parent, item, context) for item in items]

    def build_root(self, context: Context) -> etree._Element:
        roots = self.build(None, context)
        if len(roots) != 1:
            raise RequestBuildError(f"XML root <{self.label}> rendered {len(roots)} elements, need one")
        return roots[0]

    def _one(self, parent: etree._Element | None, value: Any, context: Context) -> etree._Element:
        if parent is None:
            element = etree.Element(self.tag, nsmap=self.nsmap)
        else:
            element = etree.SubElement(parent, self.tag, nsmap=self.nsmap)
        for name, label, attribute in self.attributes:
            text = _text(attribute.render(context), f"attribute {label!r} of <{self.label}>")
            if text is not None:
                element.set(name, text)
        element.text = _text(value, f"<{self.label}>")
        if self.fragment is not None:
            self.fragment.fill(element, context)
        for child in self.children:
            child.build(element, context)
        return element


def _text(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, Mapping | list | tuple):
        raise RequestBuildError(f"{where} rendered a {type(value).__name__}; XML values must be scalars")
    return check_xml_chars(scalar_text(value), where)


def compile_element(
    name: str, raw: Any, strict: bool, scope: Namespaces | None = None, declare: Namespaces | None = None
) -> XmlElement:
    """Compile ``{name: raw}``. ``scope`` holds namespaces declared by ancestors, ``declare`` extra
    declarations on this element; ``raw`` may be an ``XmlTemplate`` (a fragment as content)."""
    if isinstance(raw, list):
        raise ValueError(f"<{name}>: a list here would repeat the element; wrap it in a parent element")
    content = raw if isinstance(raw, Mapping) else {}
    nsmap = {**(declare or {}), **_declarations(name, content)}
    inner = {"xml": XML_NS, **(scope or {}), **nsmap}
    env = environment(strict)
    attributes = tuple(
        (_resolve(key[1:], inner, attribute=True), key[1:], compile_value(_scalar(key, value), env))
        for key, value in content.items()
        if key.startswith("@") and not _is_declaration(key[1:])
    )
    children: list[XmlElement] = []
    for key, value in content.items():
        if key.startswith(("@", "#")):
            continue
        for item in value if isinstance(value, list) else [value]:
            children.append(compile_element(key, item, strict, inner))
    unknown = [key for key in content if key.startswith("#") and key != "#text"]
    if unknown:
        raise ValueError(f"<{name}>: unknown key {unknown[0]!r} (only '#text' is special)")
    text = raw if not isinstance(raw, Mapping | XmlTemplate) else content.get("#text")
    return XmlElement(
        tag=_resolve(name, inner, attribute=False),
        label=name,
        nsmap=nsmap,
        attributes=attributes,
        text=compile_value(_scalar(f"<{name}>", text), env),
        spread=not isinstance(raw, Mapping | XmlTemplate),
        children=tuple(children),
        fragment=raw if isinstance(raw, XmlTemplate) else None,
    )


def _scalar(where: str, value: Any) -> Any:
    if isinstance(value, Mapping | list):
        raise ValueError(f"{where}: expected a scalar or template, got a {type(value).__name__}")
    return value


def _is_declaration(name: str) -> bool:
    return name == "xmlns" or name.startswith("xmlns:")


def _declarations(name: str, content: Mapping[str, Any]) -> dict[str | None, str]:
    declared: dict[str | None, str] = {}
    for key, uri in content.items():
        if not (key.startswith("@") and _is_declaration(key[1:])):
            continue
        prefix = None if key == "@xmlns" else key[7:]
        if prefix is not None and (not _NCNAME.fullmatch(prefix) or prefix in {"xml", "xmlns"}):
            raise ValueError(f"<{name}>: invalid namespace prefix in {key!r}")
        if not isinstance(uri, str) or not uri or "{{" in uri or "{%" in uri:
            raise ValueError(f"<{name}>: {key!r} needs a literal, non-empty namespace URI")
        declared[prefix] = uri
    return declared


def _resolve(name: str, scope: Namespaces, *, attribute: bool) -> str:
    """``prefix:local`` -> ``{uri}local``; checks the name the way XML does (and lxml agrees)."""
    prefix, _, local = name.rpartition(":")
    kind = "attribute" if attribute else "element"
    if not _NCNAME.fullmatch(local) or (prefix and not _NCNAME.fullmatch(prefix)):
        raise ValueError(f"invalid XML {kind} name {name!r}")
    if prefix and prefix not in scope:
        raise ValueError(
            f"{kind} {name!r}: namespace prefix {prefix!r} is not declared (use @xmlns:{prefix})"
        )
    uri = scope[prefix] if prefix else (None if attribute else scope.get(None))
    clark = f"{{{uri}}}{local}" if uri else local
    try:  # lxml's own checks (e.g. the URI), so rendering can never fail on a name
        probe = etree.Element("probe")
        if attribute:
            probe.set(clark, "")
        else:
            etree.SubElement(probe, clark)
    except ValueError as exc:
        raise ValueError(f"invalid XML {kind} name {name!r}: {exc}") from None
    return clark


class XmlBody(Body):
    """``xml:`` request body; ``raw`` is a template string or a one-root-key structure."""

    content_type = "application/xml; charset=utf-8"
    CONFIG: ClassVar[dict[str, Any]] = {
        "description": "An XML body: a template string (values XML-escaped) or a structure with one root "
        "key; `@name` keys are attributes, `#text` the text, `@xmlns`/`@xmlns:p` declare namespaces.",
        "type": ["string", "object"],
    }

    def __init__(self, raw: Any, strict: bool) -> None:
        self.template: XmlTemplate | None = None
        self.root: XmlElement | None = None
        if isinstance(raw, str):
            declared = _DECLARED_ENCODING.match(raw)
            if declared and declared.group(1).lower().replace("_", "-") not in {"utf-8", "utf8"}:
                raise ValueError(
                    f"xml body declares encoding {declared.group(1)!r}; bodies are sent as UTF-8"
                )
            self.template = XmlTemplate(raw, strict)
        elif isinstance(raw, Mapping) and len(raw) == 1:
            [(name, content)] = raw.items()
            self.root = compile_element(str(name), content, strict)
        else:
            raise ValueError("xml body must be a template string or a mapping with exactly one root element")

    def encode(self, context: Context) -> bytes:
        if self.root is not None:
            return serialise(self.root.build_root(context))
        assert self.template is not None
        document = self.template.render(context).lstrip()
        if not document.startswith("<?xml"):
            document = XML_DECLARATION + document
        data = document.encode()
        try:
            parse_document(data)
        except ValueError as exc:
            raise RequestBuildError(f"XML body: {exc}") from None
        return data


def serialise(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
