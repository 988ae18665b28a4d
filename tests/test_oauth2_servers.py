"""OAuth2 client credentials against real aiohttp token and API servers
through HttpClient: one token request for many leads, refresh, one retry on 401, token endpoint errors."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from oauth2_helpers import SECRET, FakeClock, oauth
from pytest_aiohttp import AiohttpServer
from yarl import URL

from streams.auth import AuthError, send_with_auth
from streams.flow import Integration
from streams.http_client import HttpClient
from streams.http_types import HttpResult, OutgoingRequest

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
