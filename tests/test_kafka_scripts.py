"""The secured listeners of deploy/kafka (start.sh --secured, always on in with-kafka.sh):
real aiokafka clients over SASL_SSL/SCRAM with mutual TLS, the other secured listeners
through their client-*.properties files, and what a client sees when it is misconfigured.

Run: deploy/kafka/with-kafka.sh .venv/bin/python -m pytest -q tests/test_kafka_scripts.py
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import ssl
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed
from aiokafka.helpers import create_ssl_context

from agents.kafka_io import admin_client, ensure_topics

pytestmark = pytest.mark.kafka

ENV_NAMES = (
    "LEADSTREAMS_SECURED_BOOTSTRAP",
    "LEADSTREAMS_SECURED_NOCERT_BOOTSTRAP",
    "LEADSTREAMS_SECURED_SSL_BOOTSTRAP",
    "LEADSTREAMS_SECURED_SASL_PLAINTEXT_BOOTSTRAP",
    "LEADSTREAMS_SECURED_USER",
    "LEADSTREAMS_SECURED_PASSWORD",
    "LEADSTREAMS_SECURED_CA",
    "LEADSTREAMS_SECURED_CLIENT_CERT",
    "LEADSTREAMS_SECURED_CLIENT_KEY",
    "LEADSTREAMS_SECURED_CLIENT_ENCRYPTED_KEY",
    "LEADSTREAMS_SECURED_CLIENT_KEY_PASSWORD",
    "LEADSTREAMS_SECURED_UNTRUSTED_CA",
    "LEADSTREAMS_SECURED_UNTRUSTED_CLIENT_CERT",
    "LEADSTREAMS_SECURED_CONFIG_DIR",
)
PROPERTIES = (
    "client-sasl-ssl.properties",
    "client-sasl-ssl-256.properties",
    "client-sasl-ssl-encrypted-key.properties",
    "client-sasl-ssl-nocert.properties",
    "client-ssl.properties",
    "client-sasl-plaintext.properties",
    "client-sasl-plaintext-scram.properties",
)
# A refused client fails at its first (and only) bootstrap attempt, well under a second
# here; the bound only keeps a hang from eating the whole test timeout.
REFUSAL_BOUND_S = 15.0
START_BOUND_S = 60.0


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    missing = [name for name in ENV_NAMES if not os.environ.get(name)]
    if missing:
        pytest.fail(f"{missing} not set: run through deploy/kafka/with-kafka.sh (secured mode)")
    return {name: os.environ[name] for name in ENV_NAMES}


def read_properties(path: Path) -> dict[str, str]:
    props = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip()
    return props


def client_kwargs(props: dict[str, str]) -> dict[str, Any]:
    """aiokafka keyword arguments for the Kafka client properties start.sh writes."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": props["bootstrap.servers"],
        "security_protocol": props["security.protocol"],
    }
    if "sasl.mechanism" in props:
        jaas = props["sasl.jaas.config"]
        kwargs["sasl_mechanism"] = props["sasl.mechanism"]
        kwargs["sasl_plain_username"] = re.search(r'username="([^"]*)"', jaas).group(1)
        kwargs["sasl_plain_password"] = re.search(r'password="([^"]*)"', jaas).group(1)
    if props["security.protocol"].endswith("SSL"):
        assert props["ssl.truststore.type"] == "PEM"
        keystore = props.get("ssl.keystore.location")
        if keystore:
            assert props["ssl.keystore.type"] == "PEM"
        kwargs["ssl_context"] = create_ssl_context(
            cafile=props["ssl.truststore.location"],
            certfile=keystore,
            password=props.get("ssl.key.password"),
        )
    return kwargs


def mtls_scram512(env: dict[str, str], **overrides: Any) -> dict[str, Any]:
    kwargs = {
        "bootstrap_servers": env["LEADSTREAMS_SECURED_BOOTSTRAP"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": env["LEADSTREAMS_SECURED_USER"],
        "sasl_plain_password": env["LEADSTREAMS_SECURED_PASSWORD"],
        "ssl_context": create_ssl_context(
            cafile=env["LEADSTREAMS_SECURED_CA"],
            certfile=env["LEADSTREAMS_SECURED_CLIENT_CERT"],
            keyfile=env["LEADSTREAMS_SECURED_CLIENT_KEY"],
        ),
    }
    kwargs.update(overrides)
    return kwargs


async def round_trip(kwargs: dict[str, Any], count: int) -> None:
    """Produce `count` records to a new topic and consume all of them back."""
    topic = "secured-" + uuid.uuid4().hex[:12]
    sent = {f"m{i}".encode() for i in range(count)}
    producer = AIOKafkaProducer(acks="all", **kwargs)
    await asyncio.wait_for(producer.start(), START_BOUND_S)
    try:
        futures = [await producer.send(topic, value) for value in sorted(sent)]
        await asyncio.wait_for(asyncio.gather(*futures), START_BOUND_S)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", enable_auto_commit=False, **kwargs)
    await asyncio.wait_for(consumer.start(), START_BOUND_S)
    received: set[bytes] = set()
    deadline = time.monotonic() + START_BOUND_S
    try:
        while received != sent and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            received.update(record.value for records in batches.values() for record in records)
    finally:
        await consumer.stop()
    assert received == sent, f"{len(received)} of {count} records back"


async def refused(kwargs: dict[str, Any], caplog: pytest.LogCaptureFixture) -> tuple[BaseException, float]:
    """Start a producer that must be refused: (the cause aiokafka logged, seconds taken).

    aiokafka raises only KafkaConnectionError("Unable to bootstrap from [...]"), without a
    __cause__; the real cause is the last argument of its 'Unable connect to "%s:%s": %s'
    error record on the "aiokafka" logger."""
    caplog.clear()
    producer = AIOKafkaProducer(**kwargs)
    started = time.monotonic()
    try:
        with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError) as raised:
            await asyncio.wait_for(producer.start(), REFUSAL_BOUND_S)
        elapsed = time.monotonic() - started
    finally:
        await producer.stop()
    assert "Unable to bootstrap from" in str(raised.value)
    assert raised.value.__cause__ is None
    causes = [
        r.args[-1]
        for r in caplog.records
        if r.name.startswith("aiokafka") and r.msg.startswith("Unable connect to") and r.args
    ]
    assert causes, [r.getMessage() for r in caplog.records]
    return causes[-1], elapsed


def test_secured_env_points_at_real_files(env: dict[str, str]) -> None:
    for name in ENV_NAMES:
        if name.endswith(("_CA", "_CERT", "_KEY")):
            assert Path(env[name]).is_file(), name
    config_dir = Path(env["LEADSTREAMS_SECURED_CONFIG_DIR"])
    main = read_properties(config_dir / "client-sasl-ssl.properties")
    assert main["bootstrap.servers"] == env["LEADSTREAMS_SECURED_BOOTSTRAP"]
    assert main["security.protocol"] == "SASL_SSL"
    assert main["sasl.mechanism"] == "SCRAM-SHA-512"
    assert main["sasl.jaas.config"] == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{env["LEADSTREAMS_SECURED_USER"]}" password="{env["LEADSTREAMS_SECURED_PASSWORD"]}";'
    )
    assert main["ssl.truststore.location"] == env["LEADSTREAMS_SECURED_CA"]
    assert main["ssl.keystore.location"] == env["LEADSTREAMS_SECURED_CLIENT_CERT"]
    # The secured ports differ from one another and from the PLAINTEXT one.
    ports = {os.environ["LEADSTREAMS_BOOTSTRAP"]} | {env[n] for n in ENV_NAMES if n.endswith("_BOOTSTRAP")}
    assert len(ports) == 5


async def test_sasl_ssl_scram_sha_512_with_mutual_tls_carries_1000_records(env: dict[str, str]) -> None:
    await round_trip(mtls_scram512(env), 1000)


@pytest.mark.parametrize("name", PROPERTIES)
async def test_every_client_properties_file_works(env: dict[str, str], name: str) -> None:
    props = read_properties(Path(env["LEADSTREAMS_SECURED_CONFIG_DIR"]) / name)
    await round_trip(client_kwargs(props), 20)


async def test_plaintext_listener_is_unchanged(kafka_bootstrap: str) -> None:
    await round_trip({"bootstrap_servers": kafka_bootstrap}, 20)


async def test_wrong_password_is_refused(env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    cause, elapsed = await refused(mtls_scram512(env, sasl_plain_password="wrong"), caplog)
    assert isinstance(cause, SaslAuthenticationFailed)
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in str(cause)
    assert elapsed < REFUSAL_BOUND_S


async def test_unknown_user_is_refused_like_a_wrong_password(
    env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    cause, _ = await refused(mtls_scram512(env, sasl_plain_username="mallory"), caplog)
    assert isinstance(cause, SaslAuthenticationFailed)


async def test_broker_certificate_from_an_untrusted_ca_is_refused(
    env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    context = create_ssl_context(
        cafile=env["LEADSTREAMS_SECURED_UNTRUSTED_CA"], certfile=env["LEADSTREAMS_SECURED_CLIENT_CERT"]
    )
    cause, elapsed = await refused(mtls_scram512(env, ssl_context=context), caplog)
    assert isinstance(cause, ssl.SSLCertVerificationError)
    assert "certificate verify failed" in str(cause)
    assert elapsed < REFUSAL_BOUND_S


@pytest.mark.parametrize("client_cert", ["LEADSTREAMS_SECURED_UNTRUSTED_CLIENT_CERT", None])
async def test_mutual_tls_listener_refuses_a_foreign_or_missing_client_certificate(
    env: dict[str, str], caplog: pytest.LogCaptureFixture, client_cert: str | None
) -> None:
    context = create_ssl_context(
        cafile=env["LEADSTREAMS_SECURED_CA"], certfile=env[client_cert] if client_cert else None
    )
    cause, elapsed = await refused(mtls_scram512(env, ssl_context=context), caplog)
    # TLS 1.3: the client's handshake completes before the broker checks its certificate,
    # so the client only sees the connection closed (no alert, nothing more specific).
    assert isinstance(cause, KafkaConnectionError)
    assert "closed" in str(cause)
    assert elapsed < REFUSAL_BOUND_S


async def test_plaintext_client_on_the_tls_port_is_refused(
    env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    cause, elapsed = await refused({"bootstrap_servers": env["LEADSTREAMS_SECURED_BOOTSTRAP"]}, caplog)
    assert isinstance(cause, KafkaConnectionError)
    assert "closed" in str(cause)
    assert elapsed < REFUSAL_BOUND_S


async def test_tls_client_on_the_plaintext_port_is_refused(
    env: dict[str, str], kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    cause, elapsed = await refused(mtls_scram512(env, bootstrap_servers=kafka_bootstrap), caplog)
    assert isinstance(cause, (ConnectionError, ssl.SSLError, KafkaConnectionError))
    assert elapsed < REFUSAL_BOUND_S


# -- a state directory keeps its broker's port and topics (make kafka-up / kafka-down) ----

SCRIPTS = Path(__file__).resolve().parents[1] / "deploy" / "kafka"


def script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPTS / name), *args], capture_output=True, text=True, timeout=180)


async def topics_of(bootstrap: str) -> set[str]:
    async with admin_client(bootstrap) as admin:
        return set(await admin.list_topics())


async def test_a_state_dir_keeps_its_port_and_topics_until_fresh(tmp_path: Path) -> None:
    state = str(tmp_path / "kafka")
    try:
        first = script("start.sh", state)
        assert first.returncode == 0, first.stderr
        bootstrap = first.stdout.strip()
        assert first.stdout == f"{bootstrap}\n"  # stdout: the address only, scripts read it
        assert f"export LEADSTREAMS_BOOTSTRAP={bootstrap}\n" in first.stderr
        assert Path(state, "bootstrap").read_text().strip() == bootstrap
        await ensure_topics(bootstrap, ["kept"], 2)

        assert script("stop.sh", state).returncode == 0
        again = script("start.sh", state)  # make kafka-down + make kafka-up
        assert (again.returncode, again.stdout.strip()) == (0, bootstrap), again.stderr
        assert "topics kept from its previous start" in again.stderr
        assert "kept" in await topics_of(bootstrap)

        assert script("stop.sh", state).returncode == 0
        fresh = script("start.sh", "--fresh", state)
        assert (fresh.returncode, fresh.stdout.strip()) == (0, bootstrap), fresh.stderr
        assert "kept" not in await topics_of(bootstrap)

        assert script("stop.sh", state).returncode == 0
        port = int(bootstrap.rsplit(":", 1)[1])
        with socket.socket() as taken:  # someone else took the port meanwhile
            taken.bind(("127.0.0.1", port))
            taken.listen()
            moved = script("start.sh", state)
        assert moved.returncode == 0, moved.stderr
        assert moved.stdout.strip() != bootstrap
        assert "is taken: starting fresh on new ports" in moved.stderr
    finally:
        script("stop.sh", state)
