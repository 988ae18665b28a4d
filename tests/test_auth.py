"""Auth schemes as I/O-free generator flows, and the driver that sends what they yield."""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass, field

import pytest
from yarl import URL

from streams.auth import AuthFlow, NoAuth, build_auth, send_with_auth
from streams.auth.api_key import ApiKeyAuth
from streams.auth.basic import BasicAuth
from streams.auth.bearer import BearerAuth
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
