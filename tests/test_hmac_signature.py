"""HMAC signing: signatures are recomputed here from the documented recipe with hmac/hashlib,
never with the scheme's own helper, and checked by a real aiohttp server on what went on the wire."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest
from aiohttp import web
from helpers import make_flow, run_once
from pytest_aiohttp import AiohttpServer
from yarl import URL

from streams.auth import send_with_auth
from streams.auth.hmac_signature import HmacSignature
from streams.flow import Integration
from streams.http_client import HttpClient
from streams.http_types import HttpResult, OutgoingRequest, RequestBuildError
from streams.problems import FlowFileError

SECRET = "top-secret-key"
NOW = 1_700_000_000.75  # a fractional clock: the timestamp is whole seconds


def sign(request: OutgoingRequest, auth: HmacSignature) -> OutgoingRequest:
    flow = auth.auth_flow(request)
    signed = next(flow)
    with pytest.raises(StopIteration):
        flow.send(HttpResult(200, {}, b"", 0.0))
    return signed


def hmac_auth(**options: object) -> HmacSignature:
    return HmacSignature(secret=SECRET, clock=lambda: NOW, **options)  # type: ignore[arg-type]


def test_default_sha256_hex_over_method_path_query_timestamp_body() -> None:
    body = '{"name": "Zoë"}'.encode()
    request = OutgoingRequest("post", URL("https://p.example/v1/leads%20x?b=2&a=caf%C3%A9"), {"A": "1"}, body)
    signed = sign(request, hmac_auth())
    message = b"POST\n/v1/leads%20x?b=2&a=caf%C3%A9\n1700000000\n" + body
    expected = hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()
    assert signed.headers == {"A": "1", "X-Timestamp": "1700000000", "X-Signature": expected}


def test_no_body_and_no_query() -> None:
    signed = sign(OutgoingRequest("GET", URL("https://p.example/status")), hmac_auth())
    expected = hmac.new(SECRET.encode(), b"GET\n/status\n1700000000\n", hashlib.sha256).hexdigest()
    assert signed.headers["X-Signature"] == expected


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
def test_algorithms_base64_prefix_and_custom_headers(algorithm: str) -> None:
    auth = hmac_auth(
        algorithm=algorithm,
        encoding="base64",
        prefix=f"{algorithm}=",
        signature_header="Sig",
        timestamp_header="Ts",
        key_id="key-7",
        key_id_header="Key",
    )
    signed = sign(OutgoingRequest("PUT", URL("https://p.example/a?x=1"), body=b"payload"), auth)
    digest = hmac.new(SECRET.encode(), b"PUT\n/a?x=1\n1700000000\npayload", algorithm).digest()
    assert signed.headers == {
        "Ts": "1700000000",
        "Sig": f"{algorithm}=" + base64.b64encode(digest).decode(),
        "Key": "key-7",
    }


def test_key_id_header_only_when_key_id_is_set() -> None:
    assert "X-Key-Id" not in sign(OutgoingRequest("GET", URL("https://p.example/")), hmac_auth()).headers
    signed = sign(OutgoingRequest("GET", URL("https://p.example/")), hmac_auth(key_id="k1"))
    assert signed.headers["X-Key-Id"] == "k1"


def test_timestamp_follows_the_clock() -> None:
    now = [100.0]
    auth = HmacSignature(secret=SECRET, clock=lambda: now[0])
    first = sign(OutgoingRequest("GET", URL("https://p.example/")), auth)
    now[0] = 161.9
    second = sign(OutgoingRequest("GET", URL("https://p.example/")), auth)
    assert (first.headers["X-Timestamp"], second.headers["X-Timestamp"]) == ("100", "161")
    assert first.headers["X-Signature"] != second.headers["X-Signature"]


def test_header_values_with_newlines_are_refused() -> None:
    with pytest.raises(RequestBuildError):
        sign(OutgoingRequest("GET", URL("https://p.example/")), hmac_auth(key_id="k\r\nEvil: 1"))
    with pytest.raises(RequestBuildError):
        sign(OutgoingRequest("GET", URL("https://p.example/")), hmac_auth(prefix="v1\n"))


def test_secret_stays_out_of_repr() -> None:
    assert SECRET not in repr(hmac_auth())


async def test_real_server_verifies_the_signature_on_the_wire(aiohttp_server: AiohttpServer) -> None:
    """The server recomputes from what it received: the raw path as sent, the body, the timestamp."""
    verdicts: list[bool] = []

    async def verify(request: web.Request) -> web.Response:
        message = f"{request.method}\n{request.raw_path}\n{request.headers['X-Timestamp']}\n".encode()
        message += await request.read()
        expected = "v1=" + hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()
        verdicts.append(hmac.compare_digest(expected, request.headers["X-Signature"]))
        return web.Response(status=204 if verdicts[-1] else 401)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", verify)
    server = await aiohttp_server(app)
    integration = Integration(
        name="signed", allow_loopback=True, auth=HmacSignature(secret=SECRET, prefix="v1=")
    )
    client = HttpClient()
    try:
        for method, path, body in [
            ("POST", "/leads/a%2Fb?q=caf%C3%A9&x=", '{"city": "Zürich"}'.encode()),
            ("GET", "/leads", None),
        ]:
            request = OutgoingRequest(method, URL(f"http://{server.host}:{server.port}{path}", encoded=True))
            request.body = body

            async def send(outgoing: OutgoingRequest) -> HttpResult:
                return await client.send(integration, outgoing, 5.0)

            response, _ = await send_with_auth(integration.auth, request, send)
            assert response.status == 204
    finally:
        await client.close()
    assert verdicts == [True, True]


# Issue #16.4: partners sign different strings; the canonical string is a template.
@pytest.mark.parametrize(
    ("canonical", "message"),
    [
        ("{method}{path}{timestamp}{body}", b"POST/v1/leads1700000000payload"),  # METHOD+PATH+TIMESTAMP+BODY
        ("{body}", b"payload"),  # the body only
        ("{path}?{sorted_query}", b"/v1/leads?a=caf%C3%A9&b=1&b=2"),  # the query-sorted path, hex
        (
            "{method}\n{target}\n{timestamp}\n{body}",
            b"POST\n/v1/leads?b=2&a=caf%C3%A9&b=1\n1700000000\npayload",
        ),
        (
            "{headers[content-type]}|{headers[X-Timestamp]}|{headers[X-Missing]}|{key_id}",
            b"text/plain|1700000000||k9",
        ),
        ("{body_sha256}.{timestamp}", hashlib.sha256(b"payload").hexdigest().encode() + b".1700000000"),
        ("{not a placeholder} {method}", b"{not a placeholder} POST"),
    ],
)
def test_canonical_string_template(canonical: str, message: bytes) -> None:
    url = URL("https://p.example/v1/leads?b=2&a=caf%C3%A9&b=1", encoded=True)
    request = OutgoingRequest("post", url, {"Content-Type": "text/plain"}, b"payload")
    signed = sign(request, hmac_auth(canonical=canonical, key_id="k9"))
    assert signed.headers["X-Signature"] == hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("timestamp_format", "sent"),
    [("unix", "1700000000"), ("unix_ms", "1700000000750"), ("iso8601", "2023-11-14T22:13:20Z")],
)
def test_timestamp_format(timestamp_format: str, sent: str) -> None:
    auth = hmac_auth(timestamp_format=timestamp_format, canonical="{timestamp}")
    signed = sign(OutgoingRequest("GET", URL("https://p.example/")), auth)
    assert signed.headers["X-Timestamp"] == sent
    assert (
        signed.headers["X-Signature"] == hmac.new(SECRET.encode(), sent.encode(), hashlib.sha256).hexdigest()
    )


@pytest.mark.parametrize("canonical", ["{method}\n{pth}", "{headers}", "{method[x]}"])
def test_unknown_placeholder_is_refused_when_the_flow_loads(canonical: str) -> None:
    with pytest.raises(ValueError, match="unknown placeholder"):
        hmac_auth(canonical=canonical)


def test_unknown_timestamp_format_is_refused() -> None:
    with pytest.raises(ValueError, match="timestamp_format must be one of unix, unix_ms, iso8601"):
        hmac_auth(timestamp_format="rfc1123")


async def test_flow_with_a_canonical_template_is_verified_on_the_wire(aiohttp_server: AiohttpServer) -> None:
    """Through a flow file: `canonical:` and `timestamp_format:` pass the schema and reach the wire."""
    received: list[tuple[str, str]] = []

    async def verify(request: web.Request) -> web.Response:
        message = f"{request.method}+{request.path}+{request.headers['X-Timestamp']}+".encode()
        message += await request.read()
        expected = hmac.new(SECRET.encode(), message, hashlib.sha512).hexdigest()
        received.append((request.headers["X-Timestamp"], request.headers["X-Signature"]))
        return web.json_response(
            {"ok": True}, status=200 if expected == request.headers["X-Signature"] else 401
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", verify)
    server = await aiohttp_server(app)
    auth = {
        "type": "hmac",
        "secret": "{{ settings.signing_key }}",
        "algorithm": "sha512",
        "canonical": "{method}+{path}+{timestamp}+{body}",
        "timestamp_format": "iso8601",
    }
    flow = make_flow(
        f"http://{server.host}:{server.port}",
        [{"name": "submit", "request": {"method": "POST", "url": "/v2/leads", "json": {"a": 1}}}],
        integration={"auth": auth},
        settings={"signing_key": SECRET},
    )
    result = await run_once(flow, {"id": "L1"})
    assert [step.http_status for step in result.steps] == [200]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", received[0][0])


def test_check_names_an_unknown_placeholder_in_the_flow() -> None:
    auth = {
        "type": "hmac",
        "secret": "s3cret-key",
        "canonical": "{method}\n{pth}",
        "timestamp_format": "unix_ms",
    }
    with pytest.raises(
        FlowFileError, match=r"integrations\.api\.auth: hmac canonical: unknown placeholder '\{pth\}'"
    ):
        make_flow("https://p.example", [{"name": "s", "request": {"url": "/x"}}], integration={"auth": auth})


# Review finding 7: {sorted_query} sorts by name, then value (not the raw "name=value" text,
# where "page2=x" < "page=1" because "2" < "="), and {headers[Host]} is the Host aiohttp sends.
@pytest.mark.parametrize(
    ("query", "sorted_query"),
    [
        ("page2=x&page=1", "page=1&page2=x"),
        ("b=2&a=1&b=1&a-b=3", "a=1&a-b=3&b=1&b=2"),
        ("flag&b=&a=2", "a=2&b=&flag"),
    ],
)
def test_sorted_query_sorts_by_name_then_value(query: str, sorted_query: str) -> None:
    signed = sign(OutgoingRequest("GET", URL(f"https://p.example/x?{query}", encoded=True)),
                  hmac_auth(canonical="{sorted_query}"))  # fmt: skip
    expected = hmac.new(SECRET.encode(), sorted_query.encode(), hashlib.sha256).hexdigest()
    assert signed.headers["X-Signature"] == expected


async def test_host_header_is_signed_as_the_server_receives_it(aiohttp_server: AiohttpServer) -> None:
    """The partner recomputes from the Host header and query it received."""
    verdicts: list[bool] = []

    async def verify(request: web.Request) -> web.Response:
        pairs = sorted(
            part.partition("=")[::2] for part in request.rel_url.raw_query_string.split("&") if part
        )
        query = "&".join(f"{name}={value}" for name, value in pairs)
        message = f"{request.method}\n{request.headers['Host']}\n{request.path}\n{query}".encode()
        expected = hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()
        verdicts.append(hmac.compare_digest(expected, request.headers["X-Signature"]))
        return web.Response(status=204 if verdicts[-1] else 401)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", verify)
    server = await aiohttp_server(app)
    auth = HmacSignature(secret=SECRET, canonical="{method}\n{headers[Host]}\n{path}\n{sorted_query}")
    integration = Integration(name="signed", allow_loopback=True, auth=auth)
    client = HttpClient()

    async def send(outgoing: OutgoingRequest) -> HttpResult:
        return await client.send(integration, outgoing, 5.0)

    try:
        for host in (f"{server.host}:{server.port}", f"localhost:{server.port}"):
            request = OutgoingRequest("GET", URL(f"http://{host}/leads?page2=x&page=1", encoded=True))
            response, _ = await send_with_auth(integration.auth, request, send)
            assert response.status == 204
        # A Host the flow sets itself is the one sent, and the one signed.
        request = OutgoingRequest(
            "GET", URL(f"http://{server.host}:{server.port}/leads"), {"Host": "api.example"}
        )
        response, _ = await send_with_auth(integration.auth, request, send)
        assert response.status == 204
    finally:
        await client.close()
    assert verdicts == [True, True, True]


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://p.example/x", "p.example"),
        ("https://p.example:443/x", "p.example"),
        ("http://p.example:8080/x", "p.example:8080"),
        ("http://[::1]:8080/x", "[::1]:8080"),
    ],
)
def test_the_signed_host_leaves_out_the_default_port(url: str, host: str) -> None:
    signed = sign(OutgoingRequest("GET", URL(url)), hmac_auth(canonical="{headers[host]}"))
    assert (
        signed.headers["X-Signature"] == hmac.new(SECRET.encode(), host.encode(), hashlib.sha256).hexdigest()
    )
