"""OAuth2 client credentials (RFC 6749 §4.4): fetch a token, cache it, refresh it, retry once.

Token fetches are yielded like any request, so the scheme stays I/O-free; they carry a
``coalesce_key`` so that when many leads find the cache empty at once, ``send_with_auth``
sends one token request and hands its response to all of them.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal
from urllib.parse import quote, urlencode

from yarl import URL

from streams.auth import AuthError, AuthFlow
from streams.config import RAISE, Reader, given, optional_text, same
from streams.headers import header_value
from streams.http_types import HttpResult, OutgoingRequest, RequestBuildError
from streams.masking import TOKEN_FIELDS, learn, learn_issued
from streams.partner_errors import describe

# A token response without ``expires_in`` is trusted for this long; a 401 still forces a refresh.
DEFAULT_LIFETIME = 300.0
# Answers to the real request after which the token is replaced and the request retried once.
REFRESH_STATUSES = frozenset({401, 403})

_instance_ids = itertools.count()


@dataclass(frozen=True)
class _Token:
    value: str
    expires_at: float
    lifetime: float

    def usable(self, now: float, margin: float) -> bool:
        # The margin is capped at half the lifetime, or a short-lived token would never be reused.
        return self.expires_at - now >= min(margin, self.lifetime / 2)


@dataclass(eq=False)
class OAuth2ClientCredentials:
    """``Authorization: Bearer <token>`` with a token from the client-credentials grant.

    ``client_auth="body"`` sends ``client_id``/``client_secret`` as form fields; ``"basic"`` sends
    them as HTTP Basic (each form-urlencoded first, RFC 6749 §2.3.1). The token is refreshed when
    fewer than ``refresh_margin`` seconds of its ``expires_in`` remain, as measured by ``clock``.
    After a 401 or 403 the token is dropped and the request retried once with a fresh one.
    A failed token fetch raises ``AuthError`` (message names the token URL, never the token).
    """

    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scope: str | None = None
    audience: str | None = None
    client_auth: Literal["body", "basic"] = "body"
    refresh_margin: float = 30.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    _token: _Token | None = field(default=None, init=False, repr=False)
    _key: str = field(init=False, repr=False)

    CONFIG: ClassVar[dict[str, Any]] = {
        "properties": {
            "type": {"const": "oauth2"},
            "token_url": {
                "type": "string",
                "pattern": "^https?://",
                "x-problem": "token_url must start with http:// or https://",
            },
            "client_id": {"type": "string"},
            "client_secret": {"type": "string"},
            "scope": {"type": ["string", "array"], "items": {"type": "string"}},
            "audience": {"type": "string"},
            "client_auth": {"enum": ["body", "basic"]},
            "refresh_margin": {"type": "number", "minimum": 0},
        },
        "required": ["type", "token_url", "client_id", "client_secret"],
        "additionalProperties": False,
    }

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], read: Reader = RAISE) -> OAuth2ClientCredentials:
        options = given(
            raw,
            {
                "scope": lambda scope: (
                    " ".join(map(str, scope)) if isinstance(scope, list) else optional_text(scope)
                ),
                "audience": optional_text,
                "client_auth": same,
                "refresh_margin": float,
            },
        )
        secrets = {key: str(raw[key]) for key in ("token_url", "client_id", "client_secret")}
        return cls(**secrets, **options)

    def __post_init__(self) -> None:
        if self.client_auth not in ("body", "basic"):
            raise ValueError(f"oauth2 client_auth must be 'body' or 'basic', not {self.client_auth!r}")
        if self.refresh_margin < 0:
            raise ValueError("oauth2 refresh_margin must not be negative")
        self._key = f"oauth2:{next(_instance_ids)}:{self.token_url}"
        learn(self.client_secret, self._basic_credentials())

    def auth_flow(self, request: OutgoingRequest) -> AuthFlow:
        token = yield from self._usable_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status not in REFRESH_STATUSES:
            return
        self.invalidate(token)
        token = yield from self._usable_token()  # maybe already refreshed by another lead
        request.headers["Authorization"] = f"Bearer {token}"
        yield request  # a second rejection is the step's answer

    def invalidate(self, token: str) -> None:
        """Forget ``token`` if it is still the cached one (another lead may have replaced it)."""
        if self._token is not None and self._token.value == token:
            self._token = None

    def _usable_token(self) -> Generator[OutgoingRequest, HttpResult, str]:
        requested_at = self.clock()
        if self._token is not None:
            if self._token.usable(requested_at, self.refresh_margin):
                return self._token.value
            self._token = None  # leads arriving during the refresh join it instead of using this one
        try:
            response = yield self._token_request()
        except Exception as exc:  # thrown in by the driver: timeout, connection error, body too large
            detail = describe(exc)
            raise AuthError(f"token request to {self.token_url} failed: {detail}") from exc
        token = self._parse(response, requested_at)
        if self._token is None:  # the first lead to get the shared response caches it
            self._token = token
        return token.value

    def _token_request(self) -> OutgoingRequest:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        if self.audience:
            form["audience"] = self.audience
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        if self.client_auth == "basic":
            headers["Authorization"] = "Basic " + self._basic_credentials()
        else:
            form.update(client_id=self.client_id, client_secret=self.client_secret)
        return OutgoingRequest(
            method="POST",
            url=URL(self.token_url),
            headers=headers,
            body=urlencode(form).encode(),
            coalesce_key=self._key,
        )

    def _basic_credentials(self) -> str:
        """``client_id:client_secret`` for HTTP Basic, each form-urlencoded first (RFC 6749 §2.3.1)."""
        pair = f"{quote(self.client_id, safe='')}:{quote(self.client_secret, safe='')}"
        return base64.b64encode(pair.encode()).decode()

    def _parse(self, response: HttpResult, requested_at: float) -> _Token:
        """The token from a token response, or AuthError naming the endpoint (never the token)."""

        def fail(problem: str) -> AuthError:
            return AuthError(f"token request to {self.token_url} failed: {problem}", response)

        try:
            payload: Any = json.loads(response.body)
        except ValueError:
            payload = None
        if not response.ok:
            raise fail(f"HTTP {response.status}{_oauth_error(payload)}")
        if not isinstance(payload, dict):
            raise fail(f"HTTP {response.status} with a body that is not a JSON object")
        learn_issued(*(payload.get(name) for name in TOKEN_FIELDS))  # before anything can show them
        value = payload.get("access_token")
        if not isinstance(value, str) or not value:
            raise fail("the response has no access_token")
        try:
            header_value("Authorization", value)
        except RequestBuildError:
            raise fail("the access_token contains CR, LF, NUL or non-ASCII characters") from None
        lifetime = _lifetime(payload.get("expires_in"))
        return _Token(value=value, expires_at=requested_at + lifetime, lifetime=lifetime)


def _lifetime(expires_in: Any) -> float:
    """Seconds from ``expires_in`` (a number or numeric string); DEFAULT_LIFETIME when it is
    missing, not numeric or not positive."""
    if isinstance(expires_in, bool):
        return DEFAULT_LIFETIME
    try:
        seconds = float(expires_in)
    except (TypeError, ValueError):
        return DEFAULT_LIFETIME
    return seconds if seconds > 0 else DEFAULT_LIFETIME


def _oauth_error(payload: Any) -> str:
    """``: error (description)`` from an RFC 6749 §5.2 error body; nothing else is echoed."""
    if not isinstance(payload, dict) or not isinstance(payload.get("error"), str):
        return ""
    text = payload["error"][:100]
    description = payload.get("error_description")
    if isinstance(description, str) and description:
        text += f" ({description[:200]})"
    return f": {text}"
