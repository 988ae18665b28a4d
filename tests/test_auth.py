"""Auth schemes as I/O-free generator flows, and the driver that sends what they yield."""

from __future__ import annotations

import asyncio
import base64
import copy
from dataclasses import dataclass, field

import pytest
from yarl import URL

from streams.auth import AuthError, AuthFlow, NoAuth, send_with_auth
from streams.auth.api_key import ApiKeyAuth
from streams.auth.basic import BasicAuth
from streams.auth.bearer import BearerAuth
from streams.auth.hmac_signature import HmacSignature
from streams.auth.oauth2 import OAuth2ClientCredentials
from streams.auth.rotating import RotatingTokens
from streams.components import build_auth
from streams.http_types import HttpResult, OutgoingRequest, RequestBuildError


def request() -> OutgoingRequest:
    return OutgoingRequest("GET", URL("https://p.example/x?a=1"), {"Accept": "application/json"})


def response(status: int = 200) -> HttpResult:
    return HttpResult(status=status, headers={}, body=b"", elapsed=0.0)


def single_request(flow: AuthFlow) -> OutgoingRequest:
    """The one request a static scheme yields; it must finish after the response."""
    outgoing = next(flow)
    with pytest.raises(StopIteration):
        flow.send(response())
    return outgoing


def test_api_key_in_default_header() -> None:
    sent = single_request(ApiKeyAuth(value="k-123").auth_flow(request()))
    assert sent.headers == {"Accept": "application/json", "X-API-Key": "k-123"}
    assert sent.url == URL("https://p.example/x?a=1")


def test_api_key_in_named_header() -> None:
    sent = single_request(ApiKeyAuth(value="k-123", header="Api-Token").auth_flow(request()))
    assert sent.headers["Api-Token"] == "k-123" and "X-API-Key" not in sent.headers


def test_api_key_in_query_keeps_existing_parameters() -> None:
    sent = single_request(ApiKeyAuth(value="k&1=2", query="apikey").auth_flow(request()))
    assert list(sent.url.query.items()) == [("a", "1"), ("apikey", "k&1=2")]
    assert "X-API-Key" not in sent.headers


def test_api_key_with_newline_is_refused() -> None:
    with pytest.raises(RequestBuildError):
        next(ApiKeyAuth(value="k\r\nEvil: 1").auth_flow(request()))


def test_basic_auth_header() -> None:
    sent = single_request(BasicAuth(username="ann", password="p:ss wörd").auth_flow(request()))
    scheme, token = sent.headers["Authorization"].split(" ")
    assert scheme == "Basic"
    assert base64.b64decode(token).decode() == "ann:p:ss wörd"
    rfc_example = next(BasicAuth("Aladdin", "open sesame").auth_flow(request()))
    assert rfc_example.headers["Authorization"] == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="


def test_bearer_auth_header() -> None:
    sent = single_request(BearerAuth(token="t0k").auth_flow(request()))
    assert sent.headers["Authorization"] == "Bearer t0k"


def test_no_auth_leaves_request_unchanged() -> None:
    original = request()
    assert single_request(NoAuth().auth_flow(original)) == request()


def test_build_auth_from_spec() -> None:
    assert isinstance(build_auth(None), NoAuth)
    assert build_auth({"type": "api_key", "value": 5, "query": "k"}) == ApiKeyAuth("5", None, "k")
    assert build_auth({"type": "basic", "username": "u", "password": "p"}) == BasicAuth("u", "p")
    assert build_auth({"type": "bearer", "token": "t"}) == BearerAuth("t")
    with pytest.raises(ValueError, match="unknown auth type"):
        build_auth({"type": "oauth9"})


def test_build_auth_oauth2() -> None:
    spec = {"type": "oauth2", "token_url": "https://a.example/token", "client_id": "id", "client_secret": 7}
    auth = build_auth(spec)
    assert isinstance(auth, OAuth2ClientCredentials)
    assert (auth.client_secret, auth.scope, auth.audience, auth.client_auth, auth.refresh_margin) == (
        "7",
        None,
        None,
        "body",
        30.0,
    )
    full = {
        **spec,
        "scope": ["read", "write"],
        "audience": "api",
        "client_auth": "basic",
        "refresh_margin": 5,
    }
    auth = build_auth(full)
    assert isinstance(auth, OAuth2ClientCredentials)
    assert (auth.scope, auth.audience, auth.client_auth, auth.refresh_margin) == (
        "read write",
        "api",
        "basic",
        5.0,
    )
    assert "7" not in repr(auth)  # the secret stays out of reprs (and so out of logs)
    with pytest.raises(ValueError, match="client_auth"):
        build_auth({**spec, "client_auth": "jwt"})


def test_build_auth_hmac() -> None:
    assert build_auth({"type": "hmac", "secret": "s"}) == HmacSignature("s")
    spec = {
        "type": "hmac",
        "secret": "s",
        "algorithm": "sha512",
        "signature_header": "Sig",
        "timestamp_header": "Ts",
        "key_id": 12,
        "key_id_header": "Kid",
        "encoding": "base64",
        "prefix": "v1=",
    }
    assert build_auth(spec) == HmacSignature("s", "sha512", "Sig", "Ts", "12", "Kid", "base64", "v1=")
    with pytest.raises(ValueError, match="algorithm"):
        build_auth({"type": "hmac", "secret": "s", "algorithm": "md5"})
    with pytest.raises(ValueError, match="encoding"):
        build_auth({"type": "hmac", "secret": "s", "encoding": "base32"})


def test_build_auth_rotating() -> None:
    assert build_auth({"type": "rotating", "tokens": ["a", 2]}) == RotatingTokens(("a", "2"))
    raw = build_auth({"type": "rotating", "tokens": ["a"], "header": "X-Token", "scheme": None})
    assert raw == RotatingTokens(["a"], "X-Token", None)
    with pytest.raises(ValueError, match="at least one token"):
        build_auth({"type": "rotating", "tokens": []})
    with pytest.raises(ValueError, match="list"):
        build_auth({"type": "rotating", "tokens": "a,b"})


def test_rotating_tokens_take_turns() -> None:
    auth = RotatingTokens(["t1", "t2", "t3"])
    seen = [single_request(auth.auth_flow(request())).headers["Authorization"] for _ in range(7)]
    assert seen == ["Bearer t1", "Bearer t2", "Bearer t3", "Bearer t1", "Bearer t2", "Bearer t3", "Bearer t1"]
    raw = RotatingTokens(["a", "b"], header="X-Token", scheme=None)
    assert [single_request(raw.auth_flow(request())).headers["X-Token"] for _ in range(3)] == ["a", "b", "a"]


def test_rotating_token_with_newline_is_refused() -> None:
    with pytest.raises(RequestBuildError):
        next(RotatingTokens(["ok\r\nEvil: 1"]).auth_flow(request()))


async def test_rotating_tokens_are_spread_evenly_across_concurrent_leads() -> None:
    auth = RotatingTokens(["t1", "t2", "t3"])
    seen: list[str] = []
    all_in_flight = Arrivals(30)

    async def send(outgoing: OutgoingRequest) -> HttpResult:
        seen.append(outgoing.headers["Authorization"])
        all_in_flight.arrive()
        await all_in_flight.wait()  # every lead holds its token at once
        return response()

    await asyncio.gather(*(send_with_auth(auth, request(), send) for _ in range(30)))
    assert sorted(seen) == sorted(["Bearer t1", "Bearer t2", "Bearer t3"] * 10)


@dataclass
class Transport:
    """An in-test ``send``: records requests and answers with queued statuses."""

    statuses: list[int]
    sent: list[OutgoingRequest] = field(default_factory=list)

    async def send(self, outgoing: OutgoingRequest) -> HttpResult:
        self.sent.append(copy.deepcopy(outgoing))  # the flow may change the request afterwards
        return response(self.statuses.pop(0))


@dataclass(frozen=True)
class RetryOnceOn401:
    """A refreshing scheme: on 401, send the request again with a new token."""

    def auth_flow(self, request: OutgoingRequest) -> AuthFlow:
        request.headers["Authorization"] = "Bearer old"
        first = yield request
        if first.status == 401:
            request.headers["Authorization"] = "Bearer new"
            yield request


async def test_send_with_auth_sends_once_for_static_schemes() -> None:
    transport = Transport([200])
    result, count = await send_with_auth(BearerAuth("t"), request(), transport.send)
    assert (result.status, count) == (200, 1)
    assert [r.headers["Authorization"] for r in transport.sent] == ["Bearer t"]


async def test_send_with_auth_follows_a_retrying_flow() -> None:
    transport = Transport([401, 200])
    result, count = await send_with_auth(RetryOnceOn401(), request(), transport.send)
    assert (result.status, count) == (200, 2)
    assert [r.headers["Authorization"] for r in transport.sent] == ["Bearer old", "Bearer new"]


async def test_send_with_auth_returns_the_last_response_when_flow_stops() -> None:
    transport = Transport([200, 500])
    result, count = await send_with_auth(RetryOnceOn401(), request(), transport.send)
    assert (result.status, count) == (200, 1)
    assert transport.statuses == [500]


class Arrivals:
    """An event set once ``expected`` parties have arrived: synchronisation without sleeps."""

    def __init__(self, expected: int) -> None:
        self.expected, self.count, self.event = expected, 0, asyncio.Event()

    def arrive(self) -> None:
        self.count += 1
        if self.count >= self.expected:
            self.event.set()

    async def wait(self) -> None:
        await self.event.wait()


@dataclass(frozen=True)
class FetchesFirst:
    """A scheme whose first request is a shared (coalesced) fetch, like a token request.

    ``yielded`` counts flows that handed the fetch to the driver: the driver then waits without
    further steps, so once a test sees the arrival, that lead is parked on the shared fetch.
    """

    key: str = "token"
    yielded: Arrivals | None = None

    def auth_flow(self, request: OutgoingRequest) -> AuthFlow:
        if self.yielded is not None:
            self.yielded.arrive()
        fetched = yield OutgoingRequest("POST", URL("https://auth.example/token"), coalesce_key=self.key)
        request.headers["Authorization"] = f"Bearer {fetched.body.decode()}"
        yield request


@dataclass
class GatedTransport:
    """Holds shared fetches until ``release`` is set; counts them; answers others with 200."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    fetches: int = 0
    fetching: asyncio.Event = field(default_factory=asyncio.Event)
    calls: list[str] = field(default_factory=list)

    async def send(self, outgoing: OutgoingRequest) -> HttpResult:
        if outgoing.coalesce_key is None:
            self.calls.append(outgoing.headers["Authorization"])
            return response()
        self.fetches += 1
        self.fetching.set()
        await self.release.wait()
        return HttpResult(status=200, headers={}, body=f"t{self.fetches}".encode(), elapsed=0.0)


async def test_concurrent_shared_fetches_are_sent_once() -> None:
    transport = GatedTransport()
    leads = [
        asyncio.create_task(send_with_auth(FetchesFirst(), request(), transport.send)) for _ in range(20)
    ]
    await transport.fetching.wait()
    transport.release.set()
    results = await asyncio.gather(*leads)
    assert transport.fetches == 1
    assert transport.calls == ["Bearer t1"] * 20
    assert {count for _, count in results} == {1}  # the shared fetch is not an attempt


async def test_different_keys_are_not_shared() -> None:
    transport = GatedTransport()
    leads = [
        asyncio.create_task(send_with_auth(FetchesFirst(key), request(), transport.send))
        for key in ("a", "b")
    ]
    await transport.fetching.wait()
    transport.release.set()
    await asyncio.gather(*leads)
    assert transport.fetches == 2


async def test_a_shared_fetch_is_sent_again_once_the_first_finished() -> None:
    transport = GatedTransport()
    transport.release.set()
    await send_with_auth(FetchesFirst(), request(), transport.send)
    await send_with_auth(FetchesFirst(), request(), transport.send)
    assert transport.fetches == 2  # coalescing shares in-flight requests only; caching is the scheme's


async def test_cancelled_sender_hands_the_shared_fetch_to_a_waiting_lead() -> None:
    transport = GatedTransport()
    first = asyncio.create_task(send_with_auth(FetchesFirst(), request(), transport.send))
    await transport.fetching.wait()
    parked = Arrivals(1)
    second = asyncio.create_task(send_with_auth(FetchesFirst(yielded=parked), request(), transport.send))
    await parked.wait()  # the second lead now waits for the first one's fetch
    transport.fetching.clear()
    first.cancel()
    await transport.fetching.wait()  # the waiting lead sends the fetch itself
    transport.release.set()
    result, _ = await second
    assert result.ok and transport.fetches == 2 and transport.calls == ["Bearer t2"]
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_send_errors_are_shared_and_thrown_into_the_flow() -> None:
    yielded = Arrivals(3)
    sends = 0

    class TokenDown:
        def auth_flow(self, request: OutgoingRequest) -> AuthFlow:
            yielded.arrive()
            try:
                yield OutgoingRequest("POST", URL("https://auth.example/token"), coalesce_key="k")
            except TimeoutError as exc:
                raise AuthError("token endpoint timed out") from exc
            yield request

    release = asyncio.Event()

    async def send(outgoing: OutgoingRequest) -> HttpResult:
        nonlocal sends
        sends += 1
        await release.wait()
        raise TimeoutError

    leads = [asyncio.create_task(send_with_auth(TokenDown(), request(), send)) for _ in range(3)]
    await yielded.wait()
    release.set()
    outcomes = await asyncio.gather(*leads, return_exceptions=True)
    assert sends == 1
    assert [str(o) for o in outcomes] == ["token endpoint timed out"] * 3
    assert all(isinstance(o, AuthError) for o in outcomes)


async def test_send_errors_propagate_when_the_flow_does_not_handle_them() -> None:
    async def send(outgoing: OutgoingRequest) -> HttpResult:
        raise ConnectionResetError("reset")

    with pytest.raises(ConnectionResetError, match="reset"):
        await send_with_auth(BearerAuth("t"), request(), send)
