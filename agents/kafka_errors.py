"""The first contact with Kafka, and one clear line when it fails.

aiokafka reports every way of not getting in — refused, wrong password, untrusted
certificate, a plaintext client on a TLS port — as ``KafkaConnectionError("Unable to
bootstrap from [...]")`` and logs the real cause at ERROR (``Unable connect to "%s:%s":
%s``, the cause its last argument). :func:`preflight` listens for that record, names the
cause in one line with what to change, and waits for a broker that is not up yet (up to
``--broker-wait``) but not for settings that will never work (credentials, TLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed

from agents.kafka_connection import KafkaConnection, local_broker

EXIT_KAFKA = 3


def unreachable_hint(kafka: KafkaConnection, here: Path | None = None) -> str:
    """Where the address came from and how to give another; the local broker's
    address when ``make kafka-up`` left one (``.kafka/bootstrap`` found from ``here``)."""
    source = kafka.bootstrap_source
    local = local_broker(here or Path.cwd())
    if local is not None and source.startswith(str(local[1])):
        return (
            f"the address is from {source}: is that broker still running? `make kafka-up` starts it "
            "again on the same port; or set --bootstrap or LEADSTREAMS_BOOTSTRAP"
        )
    if source == "the default":
        where = "no address given (--bootstrap, LEADSTREAMS_BOOTSTRAP, --kafka-config, .kafka/bootstrap)"
    else:
        where = f"the address is from {source}"
    if local is not None:
        return f"{where}; `make kafka-up` started a broker at {local[0]} ({local[1]}): --bootstrap {local[0]}"
    return f"{where}; set --bootstrap or LEADSTREAMS_BOOTSTRAP, or start a local broker with `make kafka-up`"


class KafkaUnavailable(Exception):
    """Kafka cannot be used with these settings; ``str()`` is the one line to show."""

    def __init__(self, line: str, retry: bool) -> None:
        super().__init__(line)
        self.retry = retry  # the broker may come up: worth waiting for


class _Causes(logging.Handler):
    """Collects the causes aiokafka logs while it fails to connect."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.causes: list[BaseException | str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("Unable connect to") and record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            self.causes.append(args[-1])


@contextlib.contextmanager
def _listening() -> Iterator[_Causes]:
    handler = _Causes()
    logger = logging.getLogger("aiokafka")
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False  # the cause is said once, by us
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def explain(kafka: KafkaConnection, cause: BaseException | str | None) -> KafkaUnavailable:
    """One line for why ``kafka`` could not be used, from the cause aiokafka saw."""
    where = f"Kafka at {kafka.describe()}"
    text = str(cause) if cause is not None else ""
    if isinstance(cause, SaslAuthenticationFailed):
        return KafkaUnavailable(
            f"{where}: authentication failed for user {kafka.sasl_username!r} with {kafka.sasl_mechanism} "
            "(check the user and LEADSTREAMS_KAFKA_SASL_PASSWORD or the --kafka-config file)",
            retry=False,
        )
    if isinstance(cause, ssl.SSLCertVerificationError):
        why = cause.verify_message or text
        if "hostname" in why.lower() or "ip address mismatch" in why.lower():
            fix = "connect by a name on the certificate, or --no-ssl-check-hostname"
        else:
            fix = "give the CA that signed it with --ssl-cafile"
        return KafkaUnavailable(
            f"{where}: TLS: the broker's certificate is not trusted ({why}); {fix}", retry=False
        )
    not_tls = "is it a TLS listener? (a PLAINTEXT or SASL_PLAINTEXT port needs that --security-protocol)"
    if isinstance(cause, ssl.SSLError):
        reason = getattr(cause, "reason", None) or text
        return KafkaUnavailable(f"{where}: TLS handshake failed ({reason}): {not_tls}", retry=False)
    if isinstance(cause, ConnectionResetError) and kafka.uses_tls:
        return KafkaUnavailable(
            f"{where}: the broker reset the connection during the TLS handshake: {not_tls}", False
        )
    if isinstance(cause, ConnectionRefusedError) or "Connect call failed" in text:
        hint = unreachable_hint(kafka)
        return KafkaUnavailable(f"{where}: connection refused (nothing listens there); {hint}", retry=True)
    if isinstance(cause, KafkaConnectionError) and "closed" in text:
        if kafka.uses_tls:
            why = "it may require a client certificate (--ssl-certfile/--ssl-keyfile) or not speak TLS"
        else:
            why = "is it a TLS or SASL listener? set --security-protocol (SSL, SASL_SSL, SASL_PLAINTEXT)"
        return KafkaUnavailable(f"{where}: the broker closed the connection; {why}", retry=False)
    if isinstance(cause, OSError):
        return KafkaUnavailable(f"{where}: {cause.strerror or text}; {unreachable_hint(kafka)}", retry=True)
    return KafkaUnavailable(
        f"{where}: cannot connect ({text or 'no answer'}); {unreachable_hint(kafka)}", True
    )


async def preflight(
    kafka: KafkaConnection,
    wait: float = 0.0,
    on_wait: Callable[[str, float], None] | None = None,
    attempt_timeout: float = 10.0,
) -> None:
    """Connect once (a metadata request) and leave. A broker that refuses connections is
    tried again until ``wait`` seconds have passed (``on_wait(line, waited)`` between
    tries); anything else fails at once. Raises :class:`KafkaUnavailable`. The first
    try may take ``attempt_timeout`` (a remote TLS handshake is slow); later ones end
    with the wait (a host that never answers is not waited for 10 s more)."""
    started = time.monotonic()
    timeout = attempt_timeout
    while True:
        failure = await _attempt(kafka, timeout)
        if failure is None:
            return
        waited = time.monotonic() - started
        if not failure.retry or waited >= wait:
            raise failure
        if on_wait is not None:
            on_wait(str(failure), waited)
        await asyncio.sleep(min(2.0, max(0.0, wait - waited)))
        timeout = min(attempt_timeout, max(1.0, wait - (time.monotonic() - started)))


async def _attempt(kafka: KafkaConnection, timeout: float) -> KafkaUnavailable | None:
    with _listening() as seen:
        admin = AIOKafkaAdminClient(**kafka.client_options(), request_timeout_ms=int(timeout * 1000))
        try:
            await asyncio.wait_for(admin.start(), timeout)
            await asyncio.wait_for(admin.list_topics(), timeout)
        except (KafkaConnectionError, OSError, TimeoutError) as exc:
            cause = seen.causes[-1] if seen.causes else exc
            if isinstance(exc, TimeoutError) and not seen.causes:
                hint = unreachable_hint(kafka)
                return KafkaUnavailable(
                    f"Kafka at {kafka.describe()}: no answer within {timeout:.0f}s; {hint}", True
                )
            return explain(kafka, cause)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
    return None
