"""A `publish` FILE read into messages: JSON lines (one lead per line), one JSON array of
leads, or one (pretty-printed) JSON object. Every entry that is not a JSON object is
named with its line (or array element), so a file is refused as a whole, with all its
mistakes listed, before anything is sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

BOM = b"\xef\xbb\xbf"  # editors on Windows start UTF-8 files with it; JSON parsers refuse it
KINDS = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
         float: "a number", type(None): "null"}  # fmt: skip


@dataclass(frozen=True)
class Entry:
    """One message to send: the lead's id as key, the bytes as value; ``problem`` is
    why it is not a lead (sent as-is only with --allow-bad)."""

    where: str  # "3" (a line), "element 2" (of an array)
    key: bytes | None
    value: bytes
    problem: str | None = None


@dataclass(frozen=True)
class LeadFile:
    shape: str  # "JSON lines", "a JSON array", "a JSON object"
    entries: list[Entry]

    @property
    def bad(self) -> list[Entry]:
        return [entry for entry in self.entries if entry.problem is not None]

    def messages(self, allow_bad: bool) -> list[tuple[bytes | None, bytes]]:
        """(key, value) in the file's order; bad entries only with ``allow_bad``."""
        return [(e.key, e.value) for e in self.entries if allow_bad or e.problem is None]


def read_leads(data: bytes) -> LeadFile:
    """The file's leads. A file that parses as one JSON document is an array of leads or
    one lead (a pretty-printed .json file was sent as one garbage record per line);
    otherwise it is JSON lines. A multi-line document with a syntax error is one mistake
    at its position, not one per line."""
    data = data.removeprefix(BOM)
    try:
        whole = orjson.loads(data) if data.strip() else None
    except orjson.JSONDecodeError as exc:
        whole_error: orjson.JSONDecodeError | None = exc
    else:
        whole_error = None
        if isinstance(whole, list):
            return LeadFile("a JSON array", [_element(n, item) for n, item in enumerate(whole, 1)])
        if isinstance(whole, dict):
            return LeadFile("a JSON object", [Entry("1", _key_of(whole), orjson.dumps(whole))])
    entries = [_line(number, raw) for number, raw in _lines(data)]
    if whole_error is not None and len(entries) > 1 and _a_broken_document(data, entries):
        problem = f"not JSON ({whole_error.msg}: line {whole_error.lineno} column {whole_error.colno})"
        opened = "a JSON array" if data.lstrip()[:1] == b"[" else "one JSON object over several lines"
        return LeadFile(opened, [Entry(str(whole_error.lineno), None, data, f"{problem}; read as {opened}")])
    return LeadFile("JSON lines", entries)


def _a_broken_document(data: bytes, entries: list[Entry]) -> bool:
    """A file meant as one document: it opens an array its first line does not close, or
    an object none of its lines is on its own (JSON lines with a bad line have good ones)."""
    first = data.lstrip()[:1]
    if first == b"[":
        return entries[0].problem is not None and entries[0].problem.startswith("not JSON")
    return first == b"{" and all(entry.problem is not None for entry in entries)


def _lines(data: bytes) -> list[tuple[int, bytes]]:
    numbered = enumerate(data.split(b"\n"), 1)
    return [(number, raw.rstrip(b"\r")) for number, raw in numbered if raw.strip()]


def _line(number: int, line: bytes) -> Entry:
    where = str(number)
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return Entry(where, None, line, "not UTF-8 text")
    try:
        lead = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return Entry(where, None, line, f"not JSON ({exc})")
    if not isinstance(lead, dict):
        return Entry(where, None, line, f"{_kind(lead)}, not a JSON object")
    return Entry(where, _key_of(lead), line)  # sent as written: the publisher's own bytes


def _element(number: int, item: Any) -> Entry:
    value = orjson.dumps(item)
    if not isinstance(item, dict):
        return Entry(f"element {number}", None, value, f"{_kind(item)}, not a JSON object")
    return Entry(f"element {number}", _key_of(item), value)


def _kind(value: Any) -> str:
    return KINDS.get(type(value), "a JSON value")


def _key_of(lead: dict[str, Any]) -> bytes | None:
    """The message key: the lead's id, so that one lead's messages share a partition."""
    if isinstance(lead.get("id"), str | int) and not isinstance(lead.get("id"), bool):
        return str(lead["id"]).encode()
    return None
