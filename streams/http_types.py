"""The request we send and the response we get, independent of the HTTP library."""

from __future__ import annotations

from dataclasses import dataclass, field

from yarl import URL


@dataclass
class OutgoingRequest:
    method: str
    url: URL
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    # Set by auth flows on auxiliary requests (token fetches): while one request with a key is in
    # flight, ``send_with_auth`` lets other callers with the same key share its response.
    coalesce_key: str | None = None
    # The step that sends it (as httpx's request extensions carry such things): transports that
    # answer per step (saved test cases) and recordings read it here.
    step: str = ""


@dataclass(frozen=True)
class HttpResult:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes
    elapsed: float  # seconds

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


class RequestBuildError(Exception):
    """The request could not be built safely from the lead (e.g. CR/LF in a header)."""
