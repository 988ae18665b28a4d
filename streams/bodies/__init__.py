"""Request body formats: one module each, all sharing the ``Body`` interface."""

from __future__ import annotations

from typing import Any, Protocol

from streams.templates import Context


class Body(Protocol):
    """``content_type`` is static; bodies whose type or headers depend on the lead
    (SOAP 1.2 actions, SOAPAction) also offer ``content_type_for(context)`` and
    ``extra_headers(context)``, which the request builder prefers."""

    content_type: str

    def encode(self, context: Context) -> bytes: ...


def build_body(kind: str, raw: Any, strict: bool) -> Body:
    """The body for a request's ``json:``/``form:``/``text:``/``xml:``/``soap:`` key.

    Raises ValueError (or a template syntax error) for a body the flow author got wrong."""
    from streams.bodies.form_body import FormBody
    from streams.bodies.json_body import JsonBody
    from streams.bodies.soap_body import SoapBody
    from streams.bodies.text_body import TextBody
    from streams.bodies.xml_body import XmlBody

    formats: dict[str, Any] = {
        "json": JsonBody,
        "form": FormBody,
        "text": TextBody,
        "xml": XmlBody,
        "soap": SoapBody,
    }
    return formats[kind](raw, strict)  # type: ignore[no-any-return]


BODY_KINDS = ("json", "form", "text", "xml", "soap")
