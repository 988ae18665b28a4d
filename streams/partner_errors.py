"""Short, human reasons for a partner request that got no answer.

aiohttp's own texts carry its internals (``Cannot connect to host 127.0.0.1:1 ssl:default
[Connect call failed ('127.0.0.1', 1)]``, with ``ssl:default`` even on an http URL); these
reasons end up in the errors topic, in ``leadstreams try`` and in the logs, where a person
reads them. No library maps aiohttp's exceptions to such text, hence this module.

Reasons never hold the URL (its query may carry credentials): the host and port at most.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import ssl

import aiohttp

from streams.address_policy import AddressRefused
from streams.http_client import ResponseTooLarge

MAX_REASON = 200  # an unknown exception's text is cut here: a reason is a line, not a dump

# errno of a failed connect -> what happened, with "{at}" the partner's host:port
_CONNECT_ERRNOS = {
    errno.ECONNREFUSED: "connection refused by {at}",
    errno.ETIMEDOUT: "connection to {at} timed out",
    errno.EHOSTUNREACH: "no route to {at} (host unreachable)",
    errno.ENETUNREACH: "no route to {at} (network unreachable)",
    errno.ECONNRESET: "connection reset by {at}",
    errno.ECONNABORTED: "connection to {at} aborted",
    errno.EADDRNOTAVAIL: "cannot connect to {at}: no local address available",
}
# errno of a failure on an open connection (aiohttp's bare ClientOSError)
_CONNECTION_ERRNOS = {
    errno.ECONNRESET: "connection reset by partner",
    errno.EPIPE: "partner closed the connection while the request was sent",
    errno.ETIMEDOUT: "connection to partner timed out",
    errno.ECONNABORTED: "connection to partner aborted",
}
_ERRNO_IN_TEXT = re.compile(r"\[Errno (\d+)\]")
_SSL_NOISE = re.compile(r"^\[SSL: [A-Z_0-9]+\] |\s*\(_ssl\.c:\d+\)$")
_RECEIVED = re.compile(r"received (\d+) of (\d+) bytes")


def describe(exc: BaseException, timeout: float | None = None) -> str:
    """One line saying why the partner gave no answer; ``timeout`` (seconds) names a timeout's."""
    if isinstance(exc, TimeoutError):  # aiohttp's connect/read timeouts are TimeoutErrors too
        return f"timeout after {timeout:g}s" if timeout is not None else "timeout"
    if isinstance(exc, AddressRefused):
        return f"address refused: {exc.reason}"
    if isinstance(exc, ResponseTooLarge):
        return str(exc)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS handshake failed: {_certificate_text(exc.certificate_error)}"
    if isinstance(exc, aiohttp.ClientConnectorError):  # before ClientOSError: it is one
        return _connector_text(exc)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "partner closed the connection before answering"
    if isinstance(exc, aiohttp.ServerFingerprintMismatch):
        return "TLS certificate fingerprint mismatch"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return _payload_text(exc)
    if isinstance(exc, aiohttp.InvalidURL):
        return f"invalid URL{_detail(exc.__cause__)}"  # (not the URL itself: it may hold secrets)
    if isinstance(exc, aiohttp.NonHttpUrlClientError):
        return "not an http(s) URL"
    if isinstance(exc, aiohttp.TooManyRedirects):
        return "too many redirects"
    if isinstance(exc, aiohttp.ClientResponseError):  # no status line aiohttp could read
        message = exc.message.splitlines()[0].rstrip(":") if exc.message else ""
        return f"invalid HTTP response from partner{': ' + message if message else ''}"
    if isinstance(exc, aiohttp.ClientOSError):
        return _open_connection_text(exc)
    text = fallback(exc)
    # An aiohttp error nobody mapped (or a transport's own, e.g. recorded test cases) keeps
    # the kind of problem in front, as every engine reason did before.
    return f"connection error: {text}" if isinstance(exc, aiohttp.ClientError) else text


def fallback(exc: BaseException) -> str:
    """``TypeName: message`` on one line, cut to ``MAX_REASON`` characters."""
    message = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def _at(exc: aiohttp.ClientConnectorError) -> str:
    host = exc.host
    return f"[{host}]:{exc.port}" if ":" in host else f"{host}:{exc.port}"


def _connector_text(exc: aiohttp.ClientConnectorError) -> str:
    cause = exc.os_error
    if isinstance(exc, aiohttp.ClientConnectorDNSError) or isinstance(cause, socket.gaierror):
        return _dns_text(exc.host, cause)
    if isinstance(cause, ssl.SSLError):  # ClientConnectorSSLError: the handshake, not the certificate
        return f"TLS handshake failed: {_ssl_text(cause)}"
    code = cause.errno if cause.errno is not None else _shared_errno(str(cause))
    template = _CONNECT_ERRNOS.get(code) if code is not None else None
    if template is not None:
        return template.format(at=_at(exc))
    why = os.strerror(code) if code else " ".join(str(cause).split())
    return f"cannot connect to {_at(exc)}: {why}"


def _shared_errno(text: str) -> int | None:
    """Several addresses tried (``localhost``: ::1 and 127.0.0.1): asyncio raises a plain
    ``OSError("Multiple exceptions: [Errno 111] ..., [Errno 111] ...")`` without an errno.
    One errno when they all agree."""
    codes = {int(code) for code in _ERRNO_IN_TEXT.findall(text)}
    return codes.pop() if len(codes) == 1 else None


def _dns_text(host: str, cause: OSError) -> str:
    # EAI_NONAME is the common "no such name"; a temporary failure is worth telling apart.
    if getattr(cause, "errno", None) == socket.EAI_AGAIN:
        return f"DNS lookup failed for {host} (temporary failure, try again)"
    if getattr(cause, "errno", None) in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)):
        return f"DNS lookup failed for {host}"
    return f"DNS lookup failed for {host}{_detail(cause)}"


def _certificate_text(error: BaseException) -> str:
    # e.g. "certificate verify failed (self-signed certificate)", from
    # "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate (_ssl.c:1006)"
    verify = getattr(error, "verify_message", None)
    if isinstance(verify, str) and verify:
        return f"certificate verify failed ({verify.rstrip('.')})"
    return _ssl_text(error)


def _ssl_text(error: BaseException) -> str:
    text = _SSL_NOISE.sub("", getattr(error, "strerror", None) or str(error)).strip()
    if getattr(error, "reason", None) == "WRONG_VERSION_NUMBER":
        text += " (does the port speak plain HTTP?)"
    return text or type(error).__name__


def _payload_text(exc: aiohttp.ClientPayloadError) -> str:
    received = _RECEIVED.search(str(exc))
    if received is not None:
        return f"partner closed the connection mid-response (received {received[1]} of {received[2]} bytes)"
    if "not completed" in str(exc):
        return "partner closed the connection mid-response"
    return f"unreadable response body{_detail(exc.__cause__)}"


def _open_connection_text(exc: aiohttp.ClientOSError) -> str:
    cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
    if isinstance(cause, ssl.SSLError):
        return f"TLS error: {_ssl_text(cause)}"
    template = _CONNECTION_ERRNOS.get(cause.errno) if cause.errno is not None else None
    if template is not None:
        return template
    if cause.errno:
        return f"connection error: {os.strerror(cause.errno)}"
    return f"connection error: {fallback(exc)}"


def _detail(cause: BaseException | None) -> str:
    """`` (what the cause says)``, or nothing."""
    if cause is None:
        return ""
    text = " ".join(str(getattr(cause, "strerror", None) or cause).split())
    text = text.removeprefix("Invalid URL: ")
    return f" ({text[:MAX_REASON]})" if text else ""
