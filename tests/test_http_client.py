"""The HTTP client sends each request once: every copy a partner receives went through the
step's retry policy, its attempt count and the rate limiter (issue 16, defect 5)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from resilience_helpers import SCORE_STEP, build_flow, harness, only_step

from streams.http_client import no_silent_resend
from streams.outcomes import Outcome

ONE_ATTEMPT = {"retry": {"attempts": 1}}
ANSWER = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{"score": 7}'


@asynccontextmanager
async def drops_reused_connections() -> AsyncIterator[tuple[str, list[int]]]:
    """A partner that answers the first request of each connection and, like a server whose
    keep-alive timer just fired, closes the connection on the second without answering.
    Yields its URL and the number of each request received per connection."""
    received: list[int] = []

    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for number in (1, 2):
                await reader.readuntil(b"\r\n\r\n")  # the GET's head: the request arrived
                received.append(number)
                if number == 2:
                    break
                writer.write(ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(talk, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", received
    finally:
        server.close()
        await server.wait_closed()


async def test_a_get_on_a_dropped_keep_alive_connection_reaches_the_partner_once() -> None:
    async with drops_reused_connections() as (url, received):
        flow = build_flow(url, [SCORE_STEP], integration=ONE_ATTEMPT)
        async with harness(flow) as h:
            first = only_step(await h.run())
            assert first.outcome is Outcome.SUCCESS
            second = only_step(await h.run())  # on the pooled connection, which the partner drops
    # aiohttp alone would have sent it again on a new connection: received == [1, 2, 1]
    assert received == [1, 2], received
    assert second.outcome is Outcome.ERROR and second.attempts == 1
    assert second.reason == "partner closed the connection before answering"


async def test_the_flows_retry_policy_sends_it_again_and_counts_it() -> None:
    async with drops_reused_connections() as (url, received):
        flow = build_flow(url, [SCORE_STEP], integration={"retry": {"attempts": 2, "backoff": "10ms"}})
        async with harness(flow) as h:
            assert only_step(await h.run()).outcome is Outcome.SUCCESS
            second = only_step(await h.run())
    assert received == [1, 2, 1], received
    assert second.outcome is Outcome.SUCCESS and second.attempts == 2


async def test_aiohttp_still_has_the_switch() -> None:
    async with aiohttp.ClientSession() as session:
        assert session._retry_connection is True  # aiohttp's default: resend silently
        no_silent_resend(session)
        assert session._retry_connection is False


def test_a_session_without_the_switch_is_refused() -> None:
    class Other:
        pass

    with pytest.raises(RuntimeError, match="_retry_connection"):
        no_silent_resend(Other())  # type: ignore[arg-type]
