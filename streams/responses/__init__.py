"""Response parsing: the ``response`` value templates see, by ``format:`` or Content-Type.

Each format is a parser registered by name in ``PARSERS``; ``auto`` picks one by Content-Type.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streams.http_types import HttpResult
from streams.responses.json_format import parse_json
from streams.responses.text_format import TextResponse
from streams.responses.xml_format import XmlResponse, parse_xml


class ResponseParseError(Exception):
    """The body is not in the expected format."""


def _json(body: bytes) -> Any:
    try:
        return parse_json(body)
    except ValueError as exc:
        raise ResponseParseError(f"response is not valid JSON: {exc}") from None


def _xml(body: bytes) -> Any:
    try:
        return parse_xml(body)
    except ValueError as exc:
        raise ResponseParseError(f"response is not usable XML: {exc}") from None


def _text(body: bytes) -> Any:
    return TextResponse(body.decode("utf-8", errors="replace"))


PARSERS: dict[str, Callable[[bytes], Any]] = {"json": _json, "xml": _xml, "text": _text}
AUTO = "auto"  # by Content-Type: *json -> json, *xml -> xml, else text
RESPONSE_FORMATS = (AUTO, *PARSERS)
FORMAT_SCHEMA: dict[str, Any] = {"enum": list(RESPONSE_FORMATS), "default": AUTO}


def parse_response(fmt: str, result: HttpResult) -> Any:
    """The body in ``fmt`` (``auto``: by Content-Type); see ``read_response`` for a non-2xx
    answer in another format."""
    return read_response(fmt, result)[0]


def read_response(fmt: str, result: HttpResult) -> tuple[Any, bool]:
    """The parsed body, and whether it is in ``fmt`` (False: read by its Content-Type or as text).

    Only a 2xx answer must be usable: a non-2xx one is judged by its status, and partners
    answer errors in a format of their own (a SOAP endpoint's HTTP 401 in JSON, an HTML 404
    page before a JSON API). Such a body is parsed by its Content-Type, else as text, so its
    message can still be read; a parse error never hides the status. ResponseParseError for a
    2xx answer that is not in ``fmt``."""
    try:
        return _parse(fmt, result), True
    except ResponseParseError:
        if result.ok:
            raise
    try:
        return _parse(AUTO, result), False
    except ResponseParseError:
        return _parse("text", result), False


def _parse(fmt: str, result: HttpResult) -> Any:
    if fmt == AUTO:
        kind = result.content_type
        fmt = "json" if kind.endswith("json") else "xml" if kind.endswith("xml") else "text"
    return PARSERS.get(fmt, _text)(result.body)


def soap_fault(parsed: Any) -> str | None:
    """The SOAP Fault text of a parsed response (always truthy when there is a Fault), else
    None: only an XML answer can carry one (``XmlResponse.fault``)."""
    return parsed.fault if isinstance(parsed, XmlResponse) else None
