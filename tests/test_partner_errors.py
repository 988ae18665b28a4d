"""Short, human reasons for partner requests that got no answer: each from a real failure
(a closed port, a self-signed TLS server, an unresolvable name, servers that hang up or
reset) through the real aiohttp client and the engine, as a step's reason."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer
from resilience_helpers import SCORE_STEP, build_flow, closed_port_url, harness, only_step
from yarl import URL

from streams.outcomes import Outcome
from streams.partner_errors import MAX_REASON, describe, fallback

ONE_ATTEMPT = {"retry": {"attempts": 1}}
Conversation = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def reason_at(base_url: str, **integration: object) -> str:
    """The reason of a one-step flow's error at ``base_url`` (sent once, no retry)."""
    flow = build_flow(base_url, [SCORE_STEP], integration={**ONE_ATTEMPT, **integration})
    async with harness(flow) as h:
        step = only_step(await h.run())
    assert step.outcome is Outcome.ERROR and step.reason is not None
    assert "ssl:" not in step.reason and "aiohttp" not in step.reason and "Errno" not in step.reason
    return step.reason


@asynccontextmanager
async def raw_server(conversation: Conversation) -> AsyncIterator[str]:
    """A TCP server on loopback that talks to each client as ``conversation`` says."""
    server = await asyncio.start_server(conversation, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")  # the GET's head: the request was sent


async def test_a_closed_port_is_connection_refused_by_host_and_port() -> None:
    url = URL(closed_port_url())
    assert await reason_at(str(url)) == f"connection refused by 127.0.0.1:{url.port}"


async def test_an_https_url_on_a_closed_port_names_no_tls() -> None:
    url = URL(closed_port_url()).with_scheme("https")
    assert await reason_at(str(url)) == f"connection refused by 127.0.0.1:{url.port}"


async def test_an_unresolvable_name_is_a_dns_failure() -> None:
    reason = await reason_at("http://api.example.invalid")
    # (".invalid" never resolves; a resolver that cannot be asked says "temporary failure")
    assert reason.startswith("DNS lookup failed for api.example.invalid"), reason


async def score(request: web.Request) -> web.Response:
    return web.json_response({"score": 7})


async def test_a_self_signed_certificate_fails_the_tls_handshake(
    aiohttp_server: AiohttpServer, self_signed: ssl.SSLContext
) -> None:
    app = web.Application()
    app.router.add_get("/score", score)
    server = await aiohttp_server(app, ssl=self_signed)
    reason = await reason_at(f"https://127.0.0.1:{server.port}")
    assert reason == "TLS handshake failed: certificate verify failed (self-signed certificate)"


async def test_https_to_a_plain_http_port_says_so(aiohttp_server: AiohttpServer) -> None:
    app = web.Application()
    app.router.add_get("/score", score)
    server = await aiohttp_server(app)
    reason = await reason_at(f"https://127.0.0.1:{server.port}")
    assert reason == "TLS handshake failed: wrong version number (does the port speak plain HTTP?)"


async def test_a_partner_that_hangs_up_closed_the_connection_before_answering() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    async with raw_server(hang_up) as url:
        assert await reason_at(url) == "partner closed the connection before answering"


async def test_a_reset_is_connection_reset_by_partner() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        writer.transport.abort()

    async with raw_server(reset) as url:
        assert await reason_at(url) == "connection reset by partner"


async def test_a_body_cut_short_says_how_much_came() -> None:
    async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"sc')
        await writer.drain()
        writer.close()

    async with raw_server(cut_short) as url:
        reason = await reason_at(url)
    assert reason == "partner closed the connection mid-response (received 4 of 100 bytes)"


async def test_a_response_that_is_not_http_is_an_invalid_response() -> None:
    async def not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        writer.close()

    async with raw_server(not_http) as url:
        assert await reason_at(url) == "invalid HTTP response from partner: Bad status line"


async def test_a_loopback_address_refused_by_the_guard_says_how_to_allow_it() -> None:
    reason = await reason_at(closed_port_url(), allow_loopback=False)
    assert reason.startswith("address refused: 127.0.0.1 is a loopback address"), reason
    assert "allow_loopback" in reason


async def test_the_timeout_reason_is_unchanged() -> None:
    assert describe(TimeoutError(), 5.0) == "timeout after 5s"
    assert describe(TimeoutError(), 0.25) == "timeout after 0.25s"


async def test_several_addresses_refusing_alike_are_one_refusal() -> None:
    """A name with two addresses (::1 and 127.0.0.1) fails with asyncio's "Multiple
    exceptions" OSError, which has no errno; built here as aiohttp builds it."""
    with socket.socket() as probe:  # aiohttp's ConnectionKey is internal: take one from a real failure
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorError) as refused:
            await session.get(f"http://127.0.0.1:{port}/")
    both = OSError(
        f"Multiple exceptions: [Errno 111] Connect call failed ('::1', {port}, 0, 0), "
        f"[Errno 111] Connect call failed ('127.0.0.1', {port})"
    )
    error = aiohttp.ClientConnectorError(refused.value._conn_key, both)
    assert describe(error) == f"connection refused by 127.0.0.1:{port}"


def test_an_unknown_exception_is_its_type_and_first_words() -> None:
    assert describe(ValueError("bad\n   value")) == "ValueError: bad value"
    assert describe(KeyError()) == "KeyError"
    long = describe(RuntimeError("x" * 1000))
    assert len(long) == MAX_REASON and long.startswith("RuntimeError: xxx") and long.endswith("…")
    # An aiohttp error nobody mapped keeps saying it is a connection error.
    unmapped = aiohttp.ClientConnectionError("no recorded response left")
    assert describe(unmapped) == "connection error: ClientConnectionError: no recorded response left"
    assert fallback(OSError("disk")) == "OSError: disk"
