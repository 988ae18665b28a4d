"""HMAC request signing: the partner recomputes the signature to check who sent the request
and that method, path, query, body and time were not altered on the way.

Signed bytes, exactly::

    METHOD + "\\n" + PATH_WITH_QUERY + "\\n" + TIMESTAMP + "\\n" + BODY

METHOD is upper-case; PATH_WITH_QUERY is the URL's raw path (percent-encoded, exactly as sent)
plus ``?`` and the raw query string when the query is not empty; TIMESTAMP is integer unix seconds, also
sent in ``timestamp_header``; BODY is the body bytes (empty when there is none), i.e. the
UTF-8 text for text bodies. The digest goes in ``signature_header`` as ``prefix`` + hex or base64.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from streams.auth import AuthFlow
from streams.headers import header_value
from streams.http_types import OutgoingRequest

ALGORITHMS = {"sha256": hashlib.sha256, "sha1": hashlib.sha1, "sha512": hashlib.sha512}
ENCODINGS = ("hex", "base64")


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
    clock: Callable[[], float] = field(default=time.time, repr=False)

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"hmac algorithm must be one of {', '.join(ALGORITHMS)}, not {self.algorithm!r}")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"hmac encoding must be 'hex' or 'base64', not {self.encoding!r}")

    def auth_flow(self, request: OutgoingRequest) -> AuthFlow:
        timestamp = str(int(self.clock()))
        signature = self.signature(request, timestamp)
        headers = {self.timestamp_header: timestamp, self.signature_header: signature}
        if self.key_id is not None:
            headers[self.key_id_header] = self.key_id
        for name, value in headers.items():
            request.headers[name] = header_value(name, value)
        yield request

    def signature(self, request: OutgoingRequest, timestamp: str) -> str:
        """The header value (prefix included) for ``request`` signed at ``timestamp``."""
        url = request.url
        path = url.raw_path + (f"?{url.raw_query_string}" if url.raw_query_string else "")
        message = f"{request.method.upper()}\n{path}\n{timestamp}\n".encode() + (request.body or b"")
        digest = hmac.new(self.secret.encode(), message, ALGORITHMS[self.algorithm]).digest()
        encoded = digest.hex() if self.encoding == "hex" else base64.b64encode(digest).decode()
        return self.prefix + encoded
