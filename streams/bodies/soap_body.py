"""``soap:`` bodies: a SOAP 1.1 or 1.2 envelope around XML built like ``xml:`` bodies.

``raw`` is ``{"version": "1.1" | "1.2", "action": "<SOAPAction, may be a template>",
"header": <structure or template>, "body": <structure or template>, "namespaces": {prefix: uri}}``.
The envelope uses the ``soap:`` prefix and declares ``namespaces`` so both header and body can
use those prefixes. A structure here is a mapping of child elements (several header blocks are
fine), compiled by ``xml_body.compile_element``; a template string is an XML fragment whose
values are escaped, parsed into ``soap:Header``/``soap:Body`` (so it must be well-formed).

How the action is sent differs by version, hence the two methods the request builder reads:
``content_type_for(context)`` (1.2 carries ``action="…"`` in the Content-Type) and
``extra_headers(context)`` (1.1 sends ``SOAPAction: "…"``). ``content_type`` is the static
fallback: exact unless the 1.2 action is a template.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from streams.bodies import Body
from streams.bodies.xml_body import XmlTemplate, compile_element, serialise
from streams.headers import header_value
from streams.responses.xml_format import SOAP11_NS, SOAP12_NS
from streams.templates import Context, Literal, compile_value, environment

NAMESPACES = {"1.1": SOAP11_NS, "1.2": SOAP12_NS}
DEFAULT_VERSION = "1.1"
_KEYS = {"version", "action", "header", "body", "namespaces"}


class SoapBody(Body):
    CONFIG: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["body"],
        "properties": {
            "version": {"enum": ["1.1", "1.2", 1.1, 1.2], "default": DEFAULT_VERSION},
            "action": {"type": "string"},
            "namespaces": {"type": "object", "additionalProperties": {"type": "string"}},
            "header": {"type": ["string", "object"]},
            "body": {"type": ["string", "object"]},
        },
    }

    def __init__(self, raw: Any, strict: bool) -> None:
        if not isinstance(raw, Mapping) or "body" not in raw:
            raise ValueError("soap body must be a mapping with at least 'body'")
        unknown = set(raw) - _KEYS
        if unknown:
            raise ValueError(f"soap body: unknown keys {sorted(unknown)} (allowed: {sorted(_KEYS)})")
        self.version = str(raw.get("version", DEFAULT_VERSION))  # YAML reads 1.1 as a float
        if self.version not in NAMESPACES:
            raise ValueError(f"soap version must be '1.1' or '1.2', not {self.version!r}")
        self.action = compile_value(str(raw.get("action") or ""), environment(strict))
        namespaces = raw.get("namespaces") or {}
        if not isinstance(namespaces, Mapping) or "soap" in namespaces:
            raise ValueError("soap namespaces must be a {prefix: uri} mapping without 'soap' (reserved)")
        envelope: dict[str, Any] = {"@xmlns:soap": NAMESPACES[self.version]}
        envelope.update({f"@xmlns:{prefix}": uri for prefix, uri in namespaces.items()})
        if raw.get("header") is not None:
            envelope["soap:Header"] = _part("header", raw["header"], strict)
        envelope["soap:Body"] = _part("body", raw["body"], strict)
        self.envelope = compile_element("soap:Envelope", envelope, strict)
        if self.version == "1.1":
            self.content_type = "text/xml; charset=utf-8"
        elif isinstance(self.action, Literal):
            self.content_type = self.content_type_for({})
        else:
            self.content_type = "application/soap+xml; charset=utf-8"

    def encode(self, context: Context) -> bytes:
        return serialise(self.envelope.build_root(context))

    def content_type_for(self, context: Context) -> str:
        if self.version == "1.1":
            return self.content_type
        action = self._action(context)
        return "application/soap+xml; charset=utf-8" + (f"; action={action}" if action != '""' else "")

    def extra_headers(self, context: Context) -> dict[str, str]:
        return {"SOAPAction": self._action(context)} if self.version == "1.1" else {}

    def _action(self, context: Context) -> str:
        """The action as an HTTP quoted-string (refused if it holds CR, LF or NUL)."""
        action = header_value("SOAPAction", self.action.render(context))
        return '"' + action.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _part(name: str, raw: Any, strict: bool) -> Mapping[str, Any] | XmlTemplate:
    if isinstance(raw, str):
        return XmlTemplate(raw, strict)
    if isinstance(raw, Mapping):
        return raw
    raise ValueError(f"soap {name} must be an XML structure (mapping) or a template string")
