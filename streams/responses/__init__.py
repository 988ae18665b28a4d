"""Response parsing: the ``response`` value templates see, by ``format:`` or Content-Type."""

from __future__ import annotations

from typing import Any

from streams.http_types import HttpResult
from streams.responses.json_format import parse_json
from streams.responses.text_format import TextResponse
from streams.responses.xml_format import parse_xml

RESPONSE_FORMATS = ("auto", "json", "xml", "text")


class ResponseParseError(Exception):
    """The body is not in the expected format."""


def parse_response(fmt: str, result: HttpResult) -> Any:
    if fmt == "auto":
        kind = result.content_type
        fmt = "json" if kind.endswith("json") else "xml" if kind.endswith("xml") else "text"
    if fmt == "json":
        try:
            return parse_json(result.body)
        except ValueError as exc:
            raise ResponseParseError(f"response is not valid JSON: {exc}") from None
    if fmt == "xml":
        try:
            return parse_xml(result.body)
        except ValueError as exc:
            raise ResponseParseError(f"response is not usable XML: {exc}") from None
    return TextResponse(result.body.decode("utf-8", errors="replace"))
