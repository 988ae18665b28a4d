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
        return _parse("auto", result), False
    except ResponseParseError:
        return _parse("text", result), False


def _parse(fmt: str, result: HttpResult) -> Any:
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
