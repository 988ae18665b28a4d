"""aiohttp client: one pooled session per integration, a concurrency cap, a body-size cap, and
rate-limited writes paced at the moment they happen."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import SimpleNamespace

import aiohttp

from streams.address_policy import AddressPolicy, make_connector
from streams.flow import Integration
from streams.http_types import HttpResult, OutgoingRequest
from streams.ratelimit import WriteGate, take_write_gate


@dataclass
class _Write:
    """One request's pass through its limiter's write gate (``trace_request_ctx``)."""

    gate: WriteGate
    body: bool  # the bytes go out with the body's first chunk, not with the headers
    deadline: asyncio.Timeout  # the partner's timeout, stopped while the gate holds the write
    pending: bool = False  # headers are ready, the write has not passed the gate yet

    async def wait_to_write(self) -> None:
        """Pass the gate with the partner's timeout stopped: the wait is ours (the rate limit),
        and a step with ``timeout: 1s`` must not time out (count as the circuit's failure, be
        retried) for a request the partner has not yet seen. What is left of the timeout
        starts again at the write."""
        deadline = self.deadline
        when = deadline.when()
        if when is None or deadline.expired():
            await self.gate.wait_to_write()
            return
        loop = asyncio.get_running_loop()
        left = when - loop.time()
        deadline.reschedule(None)
        try:
            await self.gate.wait_to_write()
        finally:
            deadline.reschedule(loop.time() + left)


# The last awaits aiohttp makes before a request's bytes reach the socket are these trace
# signals: ``on_request_headers_sent`` just before the headers of a body-less request are written,
# ``on_request_chunk_sent`` just before the first body chunk is written together with the
# buffered headers (aiohttp coalesces them). Nothing else runs between the callback's return and
# the write, so the time the gate records is the write's time, whatever the event loop's delays
# before it (tests/test_ratelimit_write_gate.py holds a stalled loop to this at a real server).
async def _on_headers(session: aiohttp.ClientSession, context: SimpleNamespace, params: object) -> None:
    write = context.trace_request_ctx
    if isinstance(write, _Write):
        if write.body:
            write.pending = True  # every attempt (aiohttp may retry on a new connection)
        else:
            await write.wait_to_write()


async def _on_chunk(session: aiohttp.ClientSession, context: SimpleNamespace, params: object) -> None:
    write = context.trace_request_ctx
    if isinstance(write, _Write) and write.pending:
        write.pending = False
        await write.wait_to_write()


async def _on_end(session: aiohttp.ClientSession, context: SimpleNamespace, params: object) -> None:
    write = context.trace_request_ctx
    if isinstance(write, _Write) and write.pending:  # sent without a body chunk (an empty body)
        write.pending = False
        write.gate.record_write()


def _pacing() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(_on_headers)
    trace.on_request_chunk_sent.append(_on_chunk)
    trace.on_request_end.append(_on_end)
    trace.on_request_exception.append(_on_end)
    return trace


_NO_TIMEOUT = aiohttp.ClientTimeout()  # (not the session's default of 5 minutes: the caller's holds)
_NO_DEADLINE: contextlib.nullcontext[None] = contextlib.nullcontext()


def session_key(integration: Integration) -> str:
    """One pool per integration definition (streams.loader.definition_hash): two flows' integrations
    of the same name stay apart, and a reloaded flow's unchanged one keeps its connections."""
    return integration.definition or integration.name


class ResponseTooLarge(Exception):
    pass


def no_silent_resend(session: aiohttp.ClientSession) -> None:
    """aiohttp sends a GET, PUT or DELETE again, on a new connection, when a reused keep-alive
    connection turns out closed (RFC 9112's retry rule) — unseen by the step's retry budget,
    its attempt count, the circuit and the rate limiter, while the partner may have received
    the first copy. We retry by the flow's policy only, so the session must not. There is no
    public switch; aiohttp's own TestClient turns it off through this same attribute, and
    tests/test_http_client.py checks it still exists and still works."""
    if not hasattr(session, "_retry_connection"):
        raise RuntimeError(
            "this aiohttp has no _retry_connection: check that it does not resend requests "
            "silently before allowing it (streams/http_client.py)"
        )
    session._retry_connection = False


class HttpClient:
    """Sessions are created lazily inside the running loop and closed by ``close()``."""

    def __init__(self) -> None:
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}  # a handful of distinct values

    def _session(self, integration: Integration) -> aiohttp.ClientSession:
        session = self._sessions.get(session_key(integration))
        if session is None or session.closed:
            policy = AddressPolicy(
                allow_private=integration.allow_private_networks,
                allow_loopback=integration.allow_loopback,
                allowed_networks=integration.allowed_networks,
            )
            connector = make_connector(
                policy,
                limit=integration.pool_size,
                keepalive_timeout=integration.keepalive,
                ttl_dns_cache=int(integration.dns_cache),
            )
            session = aiohttp.ClientSession(
                connector=connector,
                # Only a rate-limited integration pays for the trace signals of every request.
                trace_configs=[_pacing()] if integration.rate_limit else None,
                skip_auto_headers=("User-Agent",),
                headers={"User-Agent": "leadstreams/0.1"},
            )
            no_silent_resend(session)
            self._sessions[session_key(integration)] = session
        return session

    async def send(self, integration: Integration, request: OutgoingRequest, timeout: float) -> HttpResult:
        """Send one request; raises asyncio.TimeoutError, aiohttp.ClientError or ResponseTooLarge."""
        session = self._session(integration)
        # The concurrency cap is the caller's (streams.protections), around the rate limiter, which
        # armed its write gate for this task's request (streams.ratelimit).
        gate = take_write_gate()
        started = time.perf_counter()
        # A rate-limited request's timeout is ours rather than aiohttp's (whose deadline cannot
        # move): the write gate stops it while it holds the write (``_Write.wait_to_write``).
        clock = asyncio.timeout(timeout) if gate is not None else _NO_DEADLINE
        async with clock as deadline:
            write = None if gate is None or deadline is None else _Write(gate, bool(request.body), deadline)
            async with session.request(
                request.method,
                request.url,
                headers=request.headers,
                data=request.body,
                timeout=self._timeout(timeout) if write is None else _NO_TIMEOUT,
                trace_request_ctx=write,
            ) as response:
                body = await _read_capped(response, integration.max_response_bytes)
        return HttpResult(
            status=response.status,
            headers={k.lower(): v for k, v in response.headers.items()},
            body=body,
            elapsed=time.perf_counter() - started,
        )

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return timeout

    async def keep_only(self, integrations: Iterable[Integration]) -> None:
        """Close the sessions of integrations no flow runs any more (a reload changed them)."""
        used = {session_key(integration) for integration in integrations}
        for key in [key for key in self._sessions if key not in used]:
            await self._sessions.pop(key).close()

    async def close(self) -> None:
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            await session.close()


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    declared = response.content_length
    if declared is not None and declared > limit:
        raise ResponseTooLarge(f"response body of {declared} bytes exceeds the {limit}-byte cap")
    if declared is not None and response.headers.get("Content-Encoding", "identity") == "identity":
        return await response.read()  # exactly the declared length (compressed bodies may grow)
    body = bytearray()
    async for chunk in response.content.iter_chunked(65536):
        body += chunk
        if len(body) > limit:
            raise ResponseTooLarge(f"response body exceeds the {limit}-byte cap")
    return bytes(body)
