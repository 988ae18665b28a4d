"""XML (and SOAP) responses: ``response.xpath(...)``, ``response.fault``, ``response.text``.

Parsing is hardened because partner bodies are untrusted: no entity expansion, no DTD or
network loads, no huge-tree mode, and any document whose DOCTYPE declares entities is refused
outright (XXE, billion laughs), since legitimate API responses never need them.

``XmlResponse`` is a ``str`` (the raw body), like ``TextResponse``, so ``{{ response }}`` and the
engine's "start of the error body" reason keep working; the parsed tree is private, so templates
only reach it through ``xpath`` and ``fault``, which return plain strings, numbers, lists or None.
An empty (whitespace-only) body is an ``XmlResponse`` with no document: ``xpath`` and ``fault``
give None.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

from lxml import etree

SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope"
_FAULT_PATHS = (
    ("//soap11:Body/soap11:Fault", "faultstring", "faultcode"),
    ("//soap12:Body/soap12:Fault", "soap12:Reason/soap12:Text", "soap12:Code/soap12:Value"),
)
_SOAP_PREFIXES = {"soap11": SOAP11_NS, "soap12": SOAP12_NS}
_ENTITIES_REFUSED = "XML with entity declarations in its DOCTYPE is refused (XXE / entity expansion)"


class _RefuseExternal(etree.Resolver):
    """Belt and braces: even if an option combination made libxml2 fetch a DTD or an external
    entity (``collect_ids=False`` does, with lxml 6 / libxml2 2.14), the fetch is refused."""

    def resolve(self, system_url: str, public_id: str, context: object) -> Any:
        raise ValueError(f"XML refers to an external resource ({system_url!r}); refused")


def safe_parser() -> etree.XMLParser:
    """A fresh parser per document (lxml parsers are not safe to share across threads)."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
    )
    parser.resolvers.add(_RefuseExternal())
    return parser


def parse_document(body: bytes) -> etree._Element:
    """The root element of ``body``; ValueError if malformed or if its DOCTYPE declares entities."""
    try:
        root = etree.fromstring(body, safe_parser())
    except etree.XMLSyntaxError as exc:
        # libxml2 stops billion-laughs itself (amplification limit); say why in our words.
        if b"<!ENTITY" in body:
            raise ValueError(_ENTITIES_REFUSED) from None
        raise ValueError(f"not well-formed XML: {exc}") from None
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        raise ValueError(_ENTITIES_REFUSED)
    return root


def parse_xml(body: bytes) -> XmlResponse:
    if not body.strip():
        return XmlResponse(body.decode("utf-8", errors="replace"), None)
    root = parse_document(body)
    encoding = root.getroottree().docinfo.encoding or "utf-8"
    try:
        text = body.decode(encoding, errors="replace")
    except LookupError:
        text = body.decode("utf-8", errors="replace")
    return XmlResponse(text, root)


class XmlResponse(str):
    """The raw body as ``str`` plus XPath access to the parsed document."""

    _root: etree._Element | None

    def __new__(cls, text: str, root: etree._Element | None) -> XmlResponse:
        self = super().__new__(cls, text)
        self._root = root
        return self

    @cached_property
    def _namespaces(self) -> dict[str, str]:
        """Computed on first use: most steps never call ``xpath`` with prefixes."""
        return _default_namespaces(self._root) if self._root is not None else {}

    @property
    def text(self) -> str:
        return str.__str__(self)

    def __str__(self) -> str:
        return str.__str__(self)

    def xpath(self, expr: str, namespaces: Mapping[str, str] | None = None) -> Any:
        """Evaluate ``expr``; see ``normalise`` for the result shape.

        Prefixes available by default: every prefix the document declares (first binding in
        document order wins), ``soap11``/``soap12``, and ``soap`` (the envelope's own version,
        else 1.1). ``namespaces`` adds to / overrides those. A default namespace (``xmlns="…"``)
        has no prefix in XPath: pass one, e.g. ``response.xpath('//p:Score', {'p': 'http://…'})``,
        or use ``//*[local-name()='Score']``.
        """
        if self._root is None:
            return None
        mapping = {**self._namespaces, **(namespaces or {})}
        try:
            result = self._root.xpath(expr, namespaces=mapping)
        except etree.XPathError as exc:
            raise ValueError(f"XPath {expr!r} failed: {exc}") from None
        return normalise(result)

    @property
    def fault(self) -> str | None:
        """The SOAP Fault's text (1.1 ``faultstring``, 1.2 ``Reason/Text``), else its code, else
        ``"SOAP Fault"`` — always truthy when a Fault is present; None when there is none."""
        if self._root is None:
            return None
        for fault_path, reason_path, code_path in _FAULT_PATHS:
            faults = self._root.xpath(fault_path, namespaces=_SOAP_PREFIXES)
            if not faults:
                continue
            for path in (reason_path, code_path):
                found = faults[0].xpath(path, namespaces=_SOAP_PREFIXES)
                if found and _element_text(found[0]):
                    return _element_text(found[0])
            return "SOAP Fault"
        return None


def normalise(result: Any) -> Any:
    """One node -> its text; several -> list of texts; none -> None; numbers/booleans as-is.

    Elements give their whole text content, stripped; attribute and text() nodes give their
    exact value. Results are plain ``str`` so templates never hold lxml objects."""
    if not isinstance(result, list):
        return str(result) if isinstance(result, str) else result
    values = [_node_text(node) for node in result]
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _node_text(node: Any) -> str:
    if isinstance(node, etree._Element):
        return _element_text(node)
    if isinstance(node, tuple):  # namespace axis: (prefix, uri)
        return str(node[1])
    return str(node)


def _element_text(element: etree._Element) -> str:
    if not isinstance(element.tag, str):  # comment or processing instruction
        return (element.text or "").strip()
    return "".join(element.itertext()).strip()


def _default_namespaces(root: etree._Element) -> dict[str, str]:
    soap = SOAP12_NS if etree.QName(root).namespace == SOAP12_NS else SOAP11_NS
    declared: dict[str, str] = {}
    for element in root.iter(etree.Element):
        for prefix, uri in element.nsmap.items():
            if prefix is not None:
                declared.setdefault(prefix, uri)
    return {"soap": soap, **_SOAP_PREFIXES, **declared}
