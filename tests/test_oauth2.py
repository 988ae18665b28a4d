"""OAuth2 client credentials: the flow step by step (no network, fake clock); against real
aiohttp token and API servers in test_oauth2_servers.py."""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import parse_qs

import pytest
from oauth2_helpers import SECRET, TOKEN_URL, FakeClock, oauth
from yarl import URL

from streams.auth import AuthError, AuthFlow
from streams.auth.oauth2 import DEFAULT_LIFETIME
from streams.http_types import HttpResult, OutgoingRequest


def api_request() -> OutgoingRequest:
    return OutgoingRequest("POST", URL("https://api.example/leads"), {"Accept": "application/json"}, b"{}")


def result(status: int = 200, body: bytes = b"") -> HttpResult:
    return HttpResult(status=status, headers={}, body=body, elapsed=0.0)


def token_response(token: str, expires_in: Any = 3600, status: int = 200) -> HttpResult:
    payload = {"access_token": token, "token_type": "Bearer"}
    if expires_in is not None:
        payload["expires_in"] = expires_in
    return result(status, json.dumps(payload).encode())


def form(outgoing: OutgoingRequest) -> dict[str, str]:
    assert outgoing.body is not None
    return {name: values[0] for name, values in parse_qs(outgoing.body.decode(), strict_parsing=True).items()}


def fetch_token(flow: AuthFlow, token: str, expires_in: Any = 3600) -> OutgoingRequest:
    """Expect a token request first, answer it, return the API request that follows."""
    token_request = next(flow)
    assert token_request.url == URL(TOKEN_URL) and token_request.coalesce_key is not None
    return flow.send(token_response(token, expires_in))


def finish(flow: AuthFlow, status: int = 200) -> None:
    with pytest.raises(StopIteration):
        flow.send(result(status))


def test_cold_cache_fetches_a_token_then_sends_the_request_with_it() -> None:
    flow = oauth().auth_flow(api_request())
    token_request = next(flow)
    assert (token_request.method, token_request.url) == ("POST", URL(TOKEN_URL))
    assert token_request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "Authorization" not in token_request.headers
    assert form(token_request) == {
        "grant_type": "client_credentials",
        "client_id": "client-1",
        "client_secret": SECRET,
    }
    sent = flow.send(token_response("tok-1"))
    assert sent.url == URL("https://api.example/leads") and sent.coalesce_key is None
    assert sent.headers == {"Accept": "application/json", "Authorization": "Bearer tok-1"}
    finish(flow)


def test_scope_audience_and_basic_client_auth() -> None:
    auth = oauth(scope="leads:read leads:write", audience="https://api.example", client_auth="basic")
    token_request = next(auth.auth_flow(api_request()))
    assert form(token_request) == {
        "grant_type": "client_credentials",
        "scope": "leads:read leads:write",
        "audience": "https://api.example",
    }
    scheme, encoded = token_request.headers["Authorization"].split(" ")
    # RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding
    assert (scheme, base64.b64decode(encoded).decode()) == ("Basic", "client-1:s3cr3t%2F%2B%26value")


def test_cached_token_is_reused_without_a_token_request() -> None:
    auth = oauth()
    first = auth.auth_flow(api_request())
    fetch_token(first, "tok-1")
    finish(first)
    second = auth.auth_flow(api_request())
    assert next(second).headers["Authorization"] == "Bearer tok-1"
    finish(second)


def test_token_is_refreshed_when_less_than_the_margin_remains() -> None:
    clock = FakeClock(1000.0)
    auth = oauth(clock, refresh_margin=30.0)
    flow = auth.auth_flow(api_request())
    fetch_token(flow, "tok-1", expires_in=100)  # valid until 1100
    finish(flow)
    clock.now = 1070.0  # exactly 30 s left: still good
    assert next(auth.auth_flow(api_request())).headers["Authorization"] == "Bearer tok-1"
    clock.now = 1070.5  # 29.5 s left: refresh first
    flow = auth.auth_flow(api_request())
    assert fetch_token(flow, "tok-2", expires_in=100).headers["Authorization"] == "Bearer tok-2"
    finish(flow)
    assert next(auth.auth_flow(api_request())).headers["Authorization"] == "Bearer tok-2"


@pytest.mark.parametrize("expires_in", [None, "soon", 0, -5, True])
def test_unusable_expires_in_means_the_default_lifetime(expires_in: Any) -> None:
    clock = FakeClock(0.0)
    auth = oauth(clock, refresh_margin=30.0)
    fetch_token(auth.auth_flow(api_request()), "tok-1", expires_in=expires_in)
    clock.now = DEFAULT_LIFETIME - 30.0
    assert next(auth.auth_flow(api_request())).headers["Authorization"] == "Bearer tok-1"
    clock.now += 1
    assert next(auth.auth_flow(api_request())).url == URL(TOKEN_URL)


def test_numeric_string_expires_in_is_accepted() -> None:
    clock = FakeClock(0.0)
    auth = oauth(clock, refresh_margin=0.0)
    fetch_token(auth.auth_flow(api_request()), "tok-1", expires_in="60")
    clock.now = 60.5
    assert next(auth.auth_flow(api_request())).url == URL(TOKEN_URL)


def test_margin_is_capped_for_short_lived_tokens() -> None:
    """A 20 s token with a 30 s margin is still reused for its first 10 s."""
    clock = FakeClock(0.0)
    auth = oauth(clock, refresh_margin=30.0)
    fetch_token(auth.auth_flow(api_request()), "tok-1", expires_in=20)
    clock.now = 10.0
    assert next(auth.auth_flow(api_request())).headers["Authorization"] == "Bearer tok-1"
    clock.now = 10.5
    assert next(auth.auth_flow(api_request())).url == URL(TOKEN_URL)


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_token_is_replaced_and_the_request_retried_once(status: int) -> None:
    auth = oauth()
    flow = auth.auth_flow(api_request())
    fetch_token(flow, "tok-1")
    token_request = flow.send(result(status))
    assert token_request.url == URL(TOKEN_URL)
    retry = flow.send(token_response("tok-2"))
    assert retry.headers["Authorization"] == "Bearer tok-2" and retry.body == b"{}"
    finish(flow, status)  # a second rejection is the step's answer: no third try
    assert next(auth.auth_flow(api_request())).headers["Authorization"] == "Bearer tok-2"


def test_other_errors_are_not_retried() -> None:
    flow = oauth().auth_flow(api_request())
    fetch_token(flow, "tok-1")
    finish(flow, 500)


def test_rejection_after_another_lead_refreshed_reuses_the_new_token() -> None:
    auth = oauth()
    slow = auth.auth_flow(api_request())
    fetch_token(slow, "tok-1")  # slow lead's request is out with tok-1
    fast = auth.auth_flow(api_request())
    next(fast)  # fast lead also uses tok-1 …
    fetch_token_after_401 = fast.send(result(401))  # … is rejected and refreshes
    fast.send(token_response("tok-2"))
    assert fetch_token_after_401.url == URL(TOKEN_URL)
    retry = slow.send(result(401))  # tok-1 is no longer cached: retry with tok-2, no new fetch
    assert retry.headers["Authorization"] == "Bearer tok-2"


def test_leads_joining_a_shared_fetch_all_use_its_token() -> None:
    """The driver gives every waiting flow the same response; the first caches it."""
    auth = oauth()
    flows = [auth.auth_flow(api_request()) for _ in range(3)]
    fetches = [next(flow) for flow in flows]
    assert len({fetch.coalesce_key for fetch in fetches}) == 1
    shared = token_response("tok-1")
    assert [flow.send(shared).headers["Authorization"] for flow in flows] == ["Bearer tok-1"] * 3
    assert next(auth.auth_flow(api_request())).headers["Authorization"] == "Bearer tok-1"


def test_separate_instances_do_not_share_fetches() -> None:
    assert (
        next(oauth().auth_flow(api_request())).coalesce_key
        != next(oauth().auth_flow(api_request())).coalesce_key
    )


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (result(500, b"Internal Server Error"), "HTTP 500$"),
        (
            result(401, b'{"error": "invalid_client", "error_description": "unknown client"}'),
            r"HTTP 401: invalid_client \(unknown client\)$",
        ),
        (result(200, b"<html>not json</html>"), "not a JSON object"),
        (result(200, b'["leaked-value"]'), "not a JSON object"),
        (result(200, b'{"token_type": "Bearer"}'), "no access_token"),
        (result(200, b'{"access_token": ""}'), "no access_token"),
        (token_response("leaked-value\r\nX-Evil: 1"), "CR, LF, NUL or non-ASCII"),
    ],
)
def test_failed_token_request_raises_auth_error_naming_the_endpoint(answer: HttpResult, problem: str) -> None:
    auth = oauth()
    flow = auth.auth_flow(api_request())
    next(flow)
    with pytest.raises(
        AuthError, match=f"^token request to {re.escape(TOKEN_URL)} failed: .*{problem}"
    ) as caught:
        flow.send(answer)
    assert caught.value.response is answer
    assert SECRET not in str(caught.value) and "leaked" not in str(caught.value)
    assert next(auth.auth_flow(api_request())).url == URL(TOKEN_URL)  # nothing was cached


def test_transport_error_on_the_token_request_becomes_auth_error() -> None:
    flow = oauth().auth_flow(api_request())
    next(flow)
    with pytest.raises(AuthError, match=f"^token request to {TOKEN_URL} failed: timeout$") as caught:
        flow.throw(TimeoutError())
    assert isinstance(caught.value.__cause__, TimeoutError) and caught.value.response is None


def test_transport_error_on_the_api_request_is_not_auth_error() -> None:
    flow = oauth().auth_flow(api_request())
    fetch_token(flow, "tok-1")
    with pytest.raises(ConnectionResetError):
        flow.throw(ConnectionResetError())


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="client_auth"):
        oauth(client_auth="header")
    with pytest.raises(ValueError, match="refresh_margin"):
        oauth(refresh_margin=-1)
