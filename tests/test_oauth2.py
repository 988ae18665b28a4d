"""OAuth2 client credentials: the flow step by step (no network, fake clock), then against real
aiohttp token and API servers through HttpClient."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer
from yarl import URL

from streams.auth import AuthError, AuthFlow, send_with_auth
from streams.auth.oauth2 import DEFAULT_LIFETIME, OAuth2ClientCredentials
from streams.flow import Integration
from streams.http_client import HttpClient
from streams.http_types import HttpResult, OutgoingRequest

TOKEN_URL = "https://auth.example/oauth/token"
SECRET = "s3cr3t/+&value"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def oauth(
    clock: FakeClock | None = None, token_url: str = TOKEN_URL, **options: Any
) -> OAuth2ClientCredentials:
    return OAuth2ClientCredentials(
        token_url=token_url, client_id="client-1", client_secret=SECRET, clock=clock or FakeClock(), **options
    )


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


# ---- against real aiohttp servers ------------------------------------------------------------


@dataclass
class AuthServer:
    """A token endpoint issuing tok-1, tok-2, … and an API accepting only tokens it names valid."""

    token_status: int = 200
    expires_in: int = 3600
    revoked: set[str] = field(default_factory=set)
    token_forms: list[dict[str, str]] = field(default_factory=list)
    api_tokens: list[str] = field(default_factory=list)
    token_requested: asyncio.Event = field(default_factory=asyncio.Event)
    release_tokens: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.release_tokens.set()

    async def token(self, request: web.Request) -> web.Response:
        self.token_forms.append({name: str(value) for name, value in (await request.post()).items()})
        self.token_requested.set()
        await self.release_tokens.wait()
        if self.token_status != 200:
            return web.json_response({"error": "server_error"}, status=self.token_status)
        token = f"tok-{len(self.token_forms)}"
        return web.json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}
        )

    async def api(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.api_tokens.append(token)
        if not token.startswith("tok-") or token in self.revoked:
            return web.json_response({"error": "invalid_token"}, status=401)
        return web.json_response({"ok": True, "lead": (await request.json())["id"]})

    async def start(self, aiohttp_server: AiohttpServer) -> tuple[str, str]:
        """Token URL and API URL, on two real servers."""
        token_app, api_app = web.Application(), web.Application()
        token_app.router.add_post("/oauth/token", self.token)
        api_app.router.add_post("/leads", self.api)
        token_server, api_server = await aiohttp_server(token_app), await aiohttp_server(api_app)
        return str(token_server.make_url("/oauth/token")), str(api_server.make_url("/leads"))


@pytest.fixture
async def client() -> Any:
    http = HttpClient()
    yield http
    await http.close()


async def call(
    client: HttpClient, integration: Integration, api_url: str, lead: int
) -> tuple[HttpResult, int]:
    request = OutgoingRequest(
        "POST", URL(api_url), {"Content-Type": "application/json"}, json.dumps({"id": lead}).encode()
    )

    async def send(outgoing: OutgoingRequest) -> HttpResult:
        return await client.send(integration, outgoing, 5.0)

    return await send_with_auth(integration.auth, request, send)


async def test_fifty_concurrent_leads_on_a_cold_cache_make_one_token_request(
    aiohttp_server: AiohttpServer, client: HttpClient
) -> None:
    server = AuthServer()
    token_url, api_url = await server.start(aiohttp_server)
    integration = Integration(name="partner", allow_loopback=True, auth=oauth(token_url=token_url))
    server.release_tokens.clear()
    leads = [asyncio.create_task(call(client, integration, api_url, n)) for n in range(50)]
    # All 50 tasks ran up to their token fetch in the loop turn they were scheduled in, long
    # before the first fetch could reach the server; hold the token until then anyway.
    await server.token_requested.wait()
    server.release_tokens.set()
    results = await asyncio.gather(*leads)
    assert len(server.token_forms) == 1
    assert server.token_forms[0] == {
        "grant_type": "client_credentials",
        "client_id": "client-1",
        "client_secret": SECRET,
    }
    assert [response.status for response, _ in results] == [200] * 50
    assert [json.loads(response.body)["lead"] for response, _ in results] == list(range(50))
    assert server.api_tokens == ["tok-1"] * 50
    assert {attempts for _, attempts in results} == {1}


async def test_expired_token_is_refreshed(aiohttp_server: AiohttpServer, client: HttpClient) -> None:
    server = AuthServer(expires_in=120)
    token_url, api_url = await server.start(aiohttp_server)
    clock = FakeClock(0.0)
    integration = Integration(
        name="partner", allow_loopback=True, auth=oauth(clock, token_url=token_url, refresh_margin=30.0)
    )
    await call(client, integration, api_url, 1)
    clock.now = 90.0  # 30 s left: reuse
    await call(client, integration, api_url, 2)
    assert len(server.token_forms) == 1
    clock.now = 100.0  # 20 s left: refresh before use
    response, attempts = await call(client, integration, api_url, 3)
    assert (response.status, attempts) == (200, 1)
    assert len(server.token_forms) == 2
    assert server.api_tokens == ["tok-1", "tok-1", "tok-2"]


async def test_unauthorized_triggers_one_new_token_and_one_retry(
    aiohttp_server: AiohttpServer, client: HttpClient
) -> None:
    server = AuthServer()
    token_url, api_url = await server.start(aiohttp_server)
    integration = Integration(name="partner", allow_loopback=True, auth=oauth(token_url=token_url))
    await call(client, integration, api_url, 1)
    server.revoked.add("tok-1")  # the partner revokes the cached token early
    response, attempts = await call(client, integration, api_url, 2)
    assert (response.status, attempts, json.loads(response.body)) == (200, 2, {"ok": True, "lead": 2})
    assert len(server.token_forms) == 2
    assert server.api_tokens == ["tok-1", "tok-1", "tok-2"]


async def test_second_unauthorized_is_returned_as_is(
    aiohttp_server: AiohttpServer, client: HttpClient
) -> None:
    server = AuthServer()
    token_url, api_url = await server.start(aiohttp_server)
    server.revoked.update({"tok-1", "tok-2", "tok-3"})
    integration = Integration(name="partner", allow_loopback=True, auth=oauth(token_url=token_url))
    response, attempts = await call(client, integration, api_url, 1)
    assert (response.status, attempts) == (401, 2)
    assert len(server.token_forms) == 2 and server.api_tokens == ["tok-1", "tok-2"]


async def test_token_endpoint_error_gives_auth_error(
    aiohttp_server: AiohttpServer, client: HttpClient
) -> None:
    server = AuthServer(token_status=500)
    token_url, api_url = await server.start(aiohttp_server)
    integration = Integration(name="partner", allow_loopback=True, auth=oauth(token_url=token_url))
    with pytest.raises(AuthError) as caught:
        await call(client, integration, api_url, 1)
    assert str(caught.value) == f"token request to {token_url} failed: HTTP 500: server_error"
    assert caught.value.response is not None and caught.value.response.status == 500
    assert server.api_tokens == []  # the API is not called without a token
    assert SECRET not in str(caught.value)
