"""Arrival stamps from the kernel: when a request's first bytes reached this host.

A partner stand-in that shares the machine with the worker (and with whatever the run
puts beside it) stamps a request late whenever its event loop waits: for a core, or for
the other work of its process (the bench's driver publishes and reads thousands of
events in the same loop). Stamps taken then bunch a second of requests into less than a
second. The kernel stamps each segment when it is received (on loopback, inside the
sender's own write call), which is what a partner on its own machine would count; with
SO_TIMESTAMPNS on the connection, ``recvmsg`` hands that stamp over with the bytes.
Linux only; elsewhere (no stamp) the handler's own time is used.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time

from aiohttp import web


class StampingSocket:
    """A connection's socket that reads through ``recvmsg`` to get the kernel's receive stamps.

    Installed in place of asyncio's (private ``transport._sock``: the transport reads with
    ``recv``); everything else goes to the real socket. A keep-alive connection carries one
    request at a time (the client waits for each answer), so the stamps read since the last
    request belong to the next one, and the first of them is its arrival."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._sock = sock
        self._pending: list[float] = []

    def recv(self, size: int) -> bytes:
        data, ancillary, _, _ = self._sock.recvmsg(size, 64)
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack("qq", payload[:16])
                self._pending.append(seconds + nanoseconds / 1e9)
        return data

    def arrived(self, default: float) -> float:
        """The kernel's stamp of the current request's first bytes (``default`` if none)."""
        first = min(self._pending, default=default)
        self._pending.clear()
        return first

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux


class Stamped(asyncio.Protocol):
    """aiohttp's protocol for one connection, its socket swapped for a ``StampingSocket``."""

    def __init__(self, inner: asyncio.Protocol) -> None:
        self.inner = inner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport._sock = StampingSocket(transport._sock)  # type: ignore[attr-defined]
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


def arrival(request: web.Request, default: float) -> float:
    """The kernel's receive time (``time.time()`` clock) of this request's first bytes, or
    ``default`` when the connection has no stamps."""
    sock = getattr(request.transport, "_sock", None)
    return sock.arrived(default) if isinstance(sock, StampingSocket) else default


class StampedServer:
    """The listening server and aiohttp's runner; ``cleanup()`` stops both."""

    def __init__(self, server: asyncio.AbstractServer, runner: web.AppRunner) -> None:
        self.server, self.runner = server, runner

    async def cleanup(self) -> None:
        self.server.close()
        await self.runner.cleanup()


async def serve_stamped(app: web.Application, port: int = 0) -> tuple[StampedServer, str]:
    """Serve ``app`` on loopback with kernel arrival stamps on every connection; what stops it
    and the base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    handler = runner.server
    assert handler is not None
    server = await asyncio.get_running_loop().create_server(lambda: Stamped(handler()), "127.0.0.1", port)
    bound = server.sockets[0].getsockname()[1]
    return StampedServer(server, runner), f"http://127.0.0.1:{bound}"


def clock_offset() -> float:
    """``time.time() - time.monotonic()`` now: to put kernel stamps on the monotonic clock."""
    return time.time() - time.monotonic()
