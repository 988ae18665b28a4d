"""Kafka mistakes through the real CLI (a ``python -m agents.cli``
subprocess): one exact line, the exit code, no traceback, no ``Unclosed ...`` warning.

"Unreachable" is a port nobody listens on (``--broker-wait 2``); the cases that need a
broker (wrong password, the local broker's .kafka/bootstrap, the worker's JSON lines)
use the one of ``make test`` (deploy/kafka/with-kafka.sh). Every command runs in a
temporary directory, so a developer's own .kafka/bootstrap cannot change the lines.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from mistakes_helpers import (
    BOUND_S,
    DEMO_FLOW,
    MAKE_KAFKA_UP,
    assert_one_line,
    clean_env,
    leadstreams,
)

from examples.support.process import free_port

# The shared fixtures: here, lead_files, busy_port.
pytest_plugins = ["mistakes_fixtures"]

# -- Kafka unreachable --------------------------------------------------------------


def unreachable(bootstrap: str, source: str) -> str:
    return f"error: Kafka at {bootstrap} (PLAINTEXT): connection refused (nothing listens there); {source}"


@pytest.mark.parametrize("command", ["worker", "publish", "tail"])
def test_an_unreachable_broker_is_one_line_after_the_wait(
    command: str, here: Path, lead_files: dict[str, Path]
) -> None:
    port = free_port()
    args = {
        "worker": ["worker", str(DEMO_FLOW), "--web-port", str(free_port())],
        "publish": ["publish", "leads.x", str(lead_files["ok"])],
        "tail": ["tail", "leads.x"],
    }[command]
    code, lines, output, elapsed = leadstreams(
        *args, "--bootstrap", f"127.0.0.1:{port}", "--broker-wait", "2", cwd=here
    )
    expected = unreachable(f"127.0.0.1:{port}", f"the address is from --bootstrap; {MAKE_KAFKA_UP}")
    assert code == 3, output
    assert lines[-1] == expected, output
    assert lines[0].startswith("waiting for Kafka (0 of 2s): Kafka at "), output  # the progress line
    assert "Traceback" not in output and "Unclosed" not in output
    assert 2 <= elapsed < 2 + BOUND_S


def test_the_unreachable_line_names_where_the_address_came_from(here: Path) -> None:
    port = free_port()
    env = clean_env(LEADSTREAMS_BOOTSTRAP=f"127.0.0.1:{port}")
    code, lines, output, _ = leadstreams("tail", "leads.x", "--broker-wait", "0", cwd=here, env=env)
    expected = unreachable(f"127.0.0.1:{port}", f"the address is from LEADSTREAMS_BOOTSTRAP; {MAKE_KAFKA_UP}")
    assert_one_line(code, lines, output, 3, expected)


def test_with_no_address_at_all_the_default_is_tried_and_said(here: Path) -> None:
    with socket.socket() as probe:  # the default port must be free for this line
        assert probe.connect_ex(("127.0.0.1", 9092)) != 0, "something listens on 127.0.0.1:9092"
    code, lines, output, _ = leadstreams("tail", "leads.x", "--broker-wait", "0", cwd=here)
    source = "no address given (--bootstrap, LEADSTREAMS_BOOTSTRAP, --kafka-config, .kafka/bootstrap)"
    assert_one_line(code, lines, output, 3, unreachable("127.0.0.1:9092", f"{source}; {MAKE_KAFKA_UP}"))


def test_a_stale_local_broker_file_says_so(here: Path) -> None:
    port = free_port()
    (here / ".kafka").mkdir()
    (here / ".kafka" / "bootstrap").write_text(f"127.0.0.1:{port}\n")
    code, lines, output, _ = leadstreams("tail", "leads.x", "--broker-wait", "0", cwd=here)
    expected = unreachable(
        f"127.0.0.1:{port}",
        f"the address is from {here}/.kafka/bootstrap, written by `make kafka-up`: is that broker still "
        "running? `make kafka-up` starts it again on the same port; or set --bootstrap or "
        "LEADSTREAMS_BOOTSTRAP",
    )
    assert_one_line(code, lines, output, 3, expected)


def test_a_wrong_address_names_the_local_broker(here: Path) -> None:
    local, wrong = free_port(), free_port()
    (here / ".kafka").mkdir()
    (here / ".kafka" / "bootstrap").write_text(f"127.0.0.1:{local}\n")
    code, lines, output, _ = leadstreams(
        "tail", "leads.x", "--bootstrap", f"127.0.0.1:{wrong}", "--broker-wait", "0", cwd=here
    )
    expected = unreachable(
        f"127.0.0.1:{wrong}",
        f"the address is from --bootstrap; `make kafka-up` started a broker at 127.0.0.1:{local} "
        f"({here}/.kafka/bootstrap): --bootstrap 127.0.0.1:{local}",
    )
    assert_one_line(code, lines, output, 3, expected)


def test_ctrl_c_while_waiting_for_kafka_exits_at_once(here: Path) -> None:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "agents.cli",
        "worker",
        str(DEMO_FLOW),
        "--bootstrap",
        f"127.0.0.1:{port}",
        "--web-port",
        str(free_port()),
    ]
    # A shell without job control starts background commands with SIGINT ignored, and
    # Python then installs no KeyboardInterrupt handler: give the CLI what a terminal gives.
    process = subprocess.Popen(command, cwd=here, env=clean_env(), stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    try:
        assert process.stderr is not None
        first = process.stderr.readline()  # the progress line: it is waiting now (60 s by default)
        assert first.startswith("waiting for Kafka (0 of 60s)"), first
        interrupted = time.monotonic()
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=10)
        elapsed = time.monotonic() - interrupted
        rest = process.stderr.read()
    finally:
        process.kill()
        process.wait()
    lines = [line for line in rest.splitlines() if line.strip()]
    assert_one_line(code, lines, rest, 130, f"error: interrupted while waiting for Kafka at 127.0.0.1:{port}")
    assert elapsed < 2


# -- with the broker of `make test` ------------------------------------------------


@pytest.mark.kafka
def test_wrong_credentials_are_one_line_at_once(here: Path, lead_files: dict[str, Path]) -> None:
    bootstrap = os.environ.get("LEADSTREAMS_SECURED_NOCERT_BOOTSTRAP")
    if not bootstrap:
        pytest.fail("run through deploy/kafka/with-kafka.sh (secured mode)")
    user = os.environ["LEADSTREAMS_SECURED_USER"]
    env = clean_env(
        LEADSTREAMS_BOOTSTRAP=bootstrap,
        LEADSTREAMS_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        LEADSTREAMS_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
        LEADSTREAMS_KAFKA_SASL_USERNAME=user,
        LEADSTREAMS_KAFKA_SASL_PASSWORD="not-the-password",
        LEADSTREAMS_KAFKA_SSL_CAFILE=os.environ["LEADSTREAMS_SECURED_CA"],
    )
    code, lines, output, elapsed = leadstreams("publish", "leads.x", str(lead_files["ok"]), cwd=here, env=env)
    expected = (
        f"error: Kafka at {bootstrap} (SASL_SSL SCRAM-SHA-512 as {user}): authentication failed for "
        f"user '{user}' with SCRAM-SHA-512 (check the user and LEADSTREAMS_KAFKA_SASL_PASSWORD or the "
        "--kafka-config file)"
    )
    assert_one_line(code, lines, output, 3, expected)
    assert elapsed < BOUND_S  # not waited for: a password does not get better


@pytest.mark.kafka
def test_commands_find_the_local_broker_in_dot_kafka(
    here: Path, kafka_bootstrap: str, lead_files: dict[str, Path]
) -> None:
    (here / ".kafka").mkdir()
    (here / ".kafka" / "bootstrap").write_text(kafka_bootstrap + "\n")
    nested = here / "a" / "b"
    nested.mkdir(parents=True)
    (here / ".git").mkdir()  # a repository's root: its .kafka is found from below
    topic = f"found-{time.monotonic_ns()}"
    code, _, output, _ = leadstreams("publish", topic, str(lead_files["ok"]), "--create", cwd=nested)
    assert code == 0 and f"published 1 message(s) to {topic}" in output, output
    code, _, output, _ = leadstreams("tail", topic, "-n", "1", cwd=here)
    assert code == 0 and orjson.loads(output.splitlines()[0])["id"] == "l1", output


@pytest.mark.kafka
def test_a_json_logging_worker_prints_only_json(here: Path, kafka_bootstrap: str) -> None:
    """The worker's own start lines (created topics, the partition warning, the start
    line) are log records: JSON with --log-format json, like the waiting and error lines."""
    suffix = f"{time.monotonic_ns()}"
    flow = here / "flow.yaml"
    flow.write_text(DEMO_FLOW.read_text().replace("leads.", f"json-{suffix}."))
    command = [
        sys.executable,
        "-m",
        "agents.cli",
        "worker",
        str(flow),
        "--bootstrap",
        kafka_bootstrap,
        "--web-port",
        str(free_port()),
        "--log-format",
        "json",
    ]
    process = subprocess.Popen(command, cwd=here, env=clean_env(), stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("starting the worker" in line for line in seen):
            line = process.stderr.readline()  # bounded: the worker starts or exits (EOF)
            if not line:
                break
            seen.append(line)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    records = [orjson.loads(line) for line in seen]  # every line so far is JSON
    messages = [(record["level"], record["message"]) for record in records]
    assert (
        "info",
        f"created topics: json-{suffix}.incoming, json-{suffix}.enriched, json-{suffix}.errors",
    ) in (messages)
    starting = "starting the worker for flow 'lead-validation': joining consumer group"
    assert messages[-1][1].startswith(starting), messages
