"""HMAC request signing: the partner recomputes the signature to check who sent the request
and that method, path, query, body and time were not altered on the way.

The signed bytes are ``canonical`` with its placeholders filled per request; the default is
today's recipe::

    {method}\\n{target}\\n{timestamp}\\n{body}

Placeholders (single braces: the ``auth:`` mapping's ``{{ }}`` templates are rendered once at load,
from settings, before any request exists):

* ``{method}``: upper-case method; ``{path}``: the URL's raw path (percent-encoded, exactly as
  sent); ``{query}``: the raw query string as sent (empty when none); ``{sorted_query}``: the
  same ``name=value`` pairs sorted (by name, then value); ``{target}``: ``path`` plus ``?query``
  when the query is not empty;
* ``{timestamp}``: the time in ``timestamp_format`` (``unix`` seconds, ``unix_ms``, or ``iso8601``
  UTC ``2026-12-01T06:00:00Z``), also sent in ``timestamp_header``;
* ``{body}``: the body bytes (empty when there is none; the UTF-8 text for text bodies);
  ``{body_sha256}``: their hex SHA-256;
* ``{headers[Name]}``: a request header as the flow and the auth set it (case-insensitive; empty
  when absent), e.g. ``{headers[Content-Type]}``; ``{headers[Host]}`` is the Host aiohttp sends
  (``host`` or ``host:port`` when the port is not the scheme's default) unless the flow sets its
  own; other headers aiohttp adds on its own (Content-Length, Accept-Encoding...) are empty;
  ``{key_id}``.

Any other ``{name}`` is refused when the flow loads; other braces are literal text. The digest goes
in ``signature_header`` as ``prefix`` + hex or base64.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from streams.auth import AuthFlow
from streams.config import RAISE, Reader, given, optional_text, same
from streams.headers import header_value
from streams.http_types import OutgoingRequest
from streams.masking import learn

ALGORITHMS = {"sha256": hashlib.sha256, "sha1": hashlib.sha1, "sha512": hashlib.sha512}
ENCODINGS = ("hex", "base64")
TIMESTAMP_FORMATS = ("unix", "unix_ms", "iso8601")
DEFAULT_CANONICAL = "{method}\n{target}\n{timestamp}\n{body}"
PLACEHOLDERS = (
    "method", "path", "query", "sorted_query", "target", "timestamp", "body", "body_sha256", "key_id",
)  # fmt: skip
_PLACEHOLDER = re.compile(r"\{(?P<name>[a-z_][a-z0-9_]*)(?:\[(?P<header>[!#$%&'*+.^_`|~0-9A-Za-z-]+)\])?\}")


@dataclass(frozen=True)
class HmacSignature:
    secret: str = field(repr=False)
    algorithm: Literal["sha256", "sha1", "sha512"] = "sha256"
    signature_header: str = "X-Signature"
    timestamp_header: str = "X-Timestamp"
    key_id: str | None = None
    key_id_header: str = "X-Key-Id"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    canonical: str = DEFAULT_CANONICAL
    timestamp_format: Literal["unix", "unix_ms", "iso8601"] = "unix"
    clock: Callable[[], float] = field(default=time.time, repr=False)

    CONFIG: ClassVar[dict[str, Any]] = {
        "properties": {
            "type": {"const": "hmac"},
            "secret": {"type": "string"},
            "algorithm": {"enum": list(ALGORITHMS)},
            "signature_header": {"type": "string"},
            "timestamp_header": {"type": "string"},
            "key_id": {"type": "string"},
            "key_id_header": {"type": "string"},
            "encoding": {"enum": list(ENCODINGS)},
            "prefix": {"type": "string"},
            "canonical": {
                "description": "the string to sign, with {method} {path} {query} {sorted_query} {target} "
                "{timestamp} {body} {body_sha256} {key_id} {headers[Name]} filled per request. "
                "Default {method}\\n{target}\\n{timestamp}\\n{body}",
                "type": "string",
                "minLength": 1,
            },
            "timestamp_format": {"enum": list(TIMESTAMP_FORMATS)},
        },
        "required": ["type", "secret"],
        "additionalProperties": False,
    }

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], read: Reader = RAISE) -> HmacSignature:
        """The keys given; every other one keeps its field default (written once, above)."""
        texts = dict.fromkeys(("signature_header", "timestamp_header", "key_id_header", "prefix"), str)
        options = given(
            raw,
            {
                **texts,
                "algorithm": same,
                "encoding": same,
                "timestamp_format": same,
                "key_id": optional_text,
                "canonical": lambda text: str(text) or DEFAULT_CANONICAL,
            },
        )
        return cls(secret=str(raw["secret"]), **options)

    def __post_init__(self) -> None:
        learn(self.secret)  # the signatures are not secrets: each is good for one request and time
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"hmac algorithm must be one of {', '.join(ALGORITHMS)}, not {self.algorithm!r}")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"hmac encoding must be 'hex' or 'base64', not {self.encoding!r}")
        if self.timestamp_format not in TIMESTAMP_FORMATS:
            formats = ", ".join(TIMESTAMP_FORMATS)
            raise ValueError(f"hmac timestamp_format must be one of {formats}, not {self.timestamp_format!r}")
        for match in _PLACEHOLDER.finditer(self.canonical):
            name, header = match.group("name"), match.group("header")
            if (name == "headers") != (header is not None) or (header is None and name not in PLACEHOLDERS):
                raise ValueError(
                    f"hmac canonical: unknown placeholder {match.group(0)!r} "
                    f"(one of {', '.join('{' + p + '}' for p in PLACEHOLDERS)}, {{headers[Name]}})"
                )

    def auth_flow(self, request: OutgoingRequest) -> AuthFlow:
        timestamp = self.timestamp(self.clock())
        headers = {self.timestamp_header: timestamp}
        if self.key_id is not None:
            headers[self.key_id_header] = self.key_id
        for name, value in headers.items():
            request.headers[name] = header_value(name, value)
        # Signed last, so {headers[X-Timestamp]} sees the header as sent.
        name = self.signature_header
        request.headers[name] = header_value(name, self.signature(request, timestamp))
        yield request

    def timestamp(self, now: float) -> str:
        if self.timestamp_format == "unix_ms":
            return str(int(now * 1000))
        if self.timestamp_format == "iso8601":
            return datetime.fromtimestamp(int(now), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return str(int(now))

    def signature(self, request: OutgoingRequest, timestamp: str) -> str:
        """The header value (prefix included) for ``request`` signed at ``timestamp``."""
        digest = hmac.new(self.secret.encode(), self.message(request, timestamp), ALGORITHMS[self.algorithm])
        raw = digest.digest()
        encoded = raw.hex() if self.encoding == "hex" else base64.b64encode(raw).decode()
        return self.prefix + encoded

    def message(self, request: OutgoingRequest, timestamp: str) -> bytes:
        """The bytes to sign: ``canonical`` filled in (the body inserted as bytes, not text)."""
        url, body = request.url, request.body or b""
        query = url.raw_query_string
        values = {
            "method": request.method.upper(),
            "path": url.raw_path,
            "query": query,
            # By name, then value: sorting the raw "name=value" text would put "page2=x" before
            # "page=1" ("2" < "=").
            "sorted_query": "&".join(
                sorted((part for part in query.split("&") if part), key=lambda part: part.partition("=")[::2])
            ),
            "target": url.raw_path + (f"?{query}" if query else ""),
            "timestamp": timestamp,
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "key_id": self.key_id or "",
        }
        # aiohttp adds Host itself when the flow sets none: the URL's host, with the port unless it
        # is the scheme's default, from the same yarl property aiohttp uses, so it is signed as sent.
        headers = {"host": url.host_port_subcomponent or ""}
        headers.update((name.lower(), value) for name, value in request.headers.items())
        parts: list[bytes] = []
        position = 0
        for match in _PLACEHOLDER.finditer(self.canonical):
            parts.append(self.canonical[position : match.start()].encode())
            name, header = match.group("name"), match.group("header")
            if name == "body":
                parts.append(body)
            elif header is not None:
                parts.append(headers.get(header.lower(), "").encode())
            else:
                parts.append(values[name].encode())
            position = match.end()
        parts.append(self.canonical[position:].encode())
        return b"".join(parts)
