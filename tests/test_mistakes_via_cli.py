"""Every ordinary mistake through the real CLI (a ``python -m agents.cli`` subprocess):
one exact line, the exit code, no traceback, no ``Unclosed ...`` warning, and quickly.

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
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from examples.support.process import free_port

ROOT = Path(__file__).resolve().parents[1]
DEMO_FLOW = ROOT / "examples" / "flows" / "demo.yaml"
CLI = "python -m agents.cli"  # click's command path in "see ... --help"
RULE = "Kafka allows 1 to 249 of letters, digits, '.', '_' and '-' (not '.' or '..')"
MAKE_KAFKA_UP = "set --bootstrap or LEADSTREAMS_BOOTSTRAP, or start a local broker with `make kafka-up`"
BOUND_S = 8.0  # a mistake found without Kafka: an interpreter start and a few imports


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any Kafka setting (with-kafka.sh exports some)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADSTREAMS_")}
    return {**env, "INTERNAL_API_KEY": "k" * 8, "PYTHONPATH": str(ROOT), **extra}


def leadstreams(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> tuple[int, list[str], str, float]:
    """(exit code, stderr's non-empty lines, stdout + stderr, seconds to exit)."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "agents.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env or clean_env(),
        timeout=60,
    )
    elapsed = time.monotonic() - started
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return result.returncode, lines, result.stdout + result.stderr, elapsed


def assert_one_line(code: int, lines: list[str], output: str, expected_code: int, expected: str) -> None:
    assert code == expected_code, output
    assert lines == [expected], output
    assert "Traceback" not in output and "Unclosed" not in output


@pytest.fixture
def here(tmp_path: Path) -> Path:
    """The working directory: no .kafka/ there, not inside a repository."""
    work = tmp_path / "work"
    work.mkdir()
    return work


@pytest.fixture
def lead_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "ok": b'{"id": "l1", "email": "a@example.com"}\n',
        "not-json": b'{"id": "l1",\n',
        "not-utf8": '{"id": "caf\xe9"}\n'.encode("latin-1"),
        "array": b"[1, 2]\n",
    }
    paths = {}
    for name, content in files.items():
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_bytes(content)
    return paths


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


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


# -- mistakes found before any contact with Kafka ---------------------------------


def test_a_web_port_in_use_is_found_before_kafka(here: Path, busy_port: int) -> None:
    # A broker that is not there, waited for 30 s: reaching it first would show.
    code, lines, output, elapsed = leadstreams(
        "worker",
        str(DEMO_FLOW),
        "--web-port",
        str(busy_port),
        "--bootstrap",
        f"127.0.0.1:{free_port()}",
        "--broker-wait",
        "30",
        cwd=here,
    )
    expected = (
        f"error: --web-host 127.0.0.1 --web-port {busy_port}: the port is in use (another worker?); "
        "give each worker its own --web-port"
    )
    assert_one_line(code, lines, output, 2, expected)
    assert elapsed < BOUND_S


def test_a_bad_loglevel_is_a_choice_checked_first(here: Path) -> None:
    code, lines, output, elapsed = leadstreams(
        "worker",
        str(DEMO_FLOW),
        "--loglevel",
        "verbose",
        "--bootstrap",
        f"127.0.0.1:{free_port()}",
        "--broker-wait",
        "30",
        cwd=here,
    )
    expected = (
        "error: Invalid value for '--loglevel': 'verbose' is not one of 'debug', 'info', 'warning', "
        f"'error', 'critical'. (see {CLI} worker --help)"
    )
    assert_one_line(code, lines, output, 2, expected)
    assert elapsed < BOUND_S


def test_the_loglevel_is_case_insensitive(here: Path) -> None:
    code, lines, output, _ = leadstreams(
        "worker",
        str(DEMO_FLOW),
        "--loglevel",
        "WARNING",
        "--bootstrap",
        f"127.0.0.1:{free_port()}",
        "--broker-wait",
        "0",
        "--web-port",
        str(free_port()),
        cwd=here,
    )
    assert code == 3 and "connection refused" in lines[-1], output  # past the options, at Kafka


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["publish", "leads/in", "LEADS"],
            f"error: Invalid value for 'TOPIC': topic name 'leads/in' has '/'; {RULE} "
            f"(see {CLI} publish --help)",
        ),
        (
            ["tail", "ok", ".."],
            f"error: Invalid value for 'TOPICS...': topic name '..' is reserved; {RULE} "
            f"(see {CLI} tail --help)",
        ),
        (
            ["tail", "x" * 250],
            f"error: Invalid value for 'TOPICS...': topic name '{'x' * 250}' has 250 characters; {RULE} "
            f"(see {CLI} tail --help)",
        ),
    ],
)
def test_an_invalid_topic_name_is_refused_before_kafka(
    here: Path, lead_files: dict[str, Path], args: list[str], expected: str
) -> None:
    args = [str(lead_files["ok"]) if arg == "LEADS" else arg for arg in args]
    code, lines, output, elapsed = leadstreams(
        *args, "--bootstrap", f"127.0.0.1:{free_port()}", "--broker-wait", "30", cwd=here
    )
    assert_one_line(code, lines, output, 2, expected)
    assert elapsed < BOUND_S


def test_an_invalid_topic_name_in_the_flow_is_refused_before_kafka(here: Path) -> None:
    flow = here / "flow.yaml"
    flow.write_text(DEMO_FLOW.read_text().replace("input: leads.incoming", 'input: ".."'))
    code, lines, output, elapsed = leadstreams(
        "worker", str(flow), "--bootstrap", f"127.0.0.1:{free_port()}", "--broker-wait", "30", cwd=here
    )
    assert_one_line(code, lines, output, 2, f"error: flow {flow}: topic name '..' is reserved; {RULE}")
    assert elapsed < BOUND_S


def test_a_flow_without_topics_checks_but_no_worker_runs_it(here: Path) -> None:
    flow = here / "flow.yaml"
    text = DEMO_FLOW.read_text()
    start = text.index("topics:")
    flow.write_text(text[:start] + text[text.index("\n", start) + 1 :])
    code, lines, output, elapsed = leadstreams(
        "worker", str(flow), "--bootstrap", f"127.0.0.1:{free_port()}", "--broker-wait", "30", cwd=here
    )
    expected = (f"error: {flow}: the worker needs `topics:` in the flow file "
                "(e.g. topics: {input: leads.in, enriched: leads.out, errors: leads.errors})")  # fmt: skip
    assert_one_line(code, lines, output, 2, expected)
    assert elapsed < BOUND_S
    code, _, output, _ = leadstreams("check", str(flow), cwd=here)
    assert code == 0 and "no topics (the worker needs them)" in output, output


def test_a_missing_flow_file_is_one_line(here: Path) -> None:
    code, lines, output, elapsed = leadstreams(
        "worker", "nope.yaml", "--bootstrap", f"127.0.0.1:{free_port()}", "--broker-wait", "30", cwd=here
    )
    assert_one_line(code, lines, output, 2, "error: flow nope.yaml: cannot read: No such file or directory")
    assert elapsed < BOUND_S


@pytest.mark.parametrize(
    ("lead", "expected"),
    [
        ("missing", "'{path}': No such file or directory"),
        ("directory", "'{path}': Is a directory"),
        ("not-json", "{path}: not valid JSON: unexpected end of data: line 2 column 1 (char 13)"),
        ("not-utf8", "{path}: not UTF-8 text (invalid continuation byte at byte 11)"),
        ("array", "{path}: a lead must be a JSON object"),
    ],
)
def test_an_unreadable_lead_for_try_is_one_line(
    here: Path, lead_files: dict[str, Path], lead: str, expected: str
) -> None:
    path = {"missing": here / "nope.json", "directory": here}.get(lead) or lead_files[lead]
    code, lines, output, elapsed = leadstreams("try", str(DEMO_FLOW), "--lead", str(path), cwd=here)
    quote = "'--lead'" if lead in ("missing", "directory") else "--lead"  # (click's own quoting)
    line = f"error: Invalid value for {quote}: {expected.format(path=path)} (see {CLI} try --help)"
    assert_one_line(code, lines, output, 2, line)
    assert elapsed < BOUND_S


@pytest.mark.parametrize(
    ("lead", "expected"),
    [
        ("missing", "'{path}': No such file or directory"),
        ("directory", "'{path}': Is a directory"),
        (
            "not-json",
            "{path}:1: not JSON (unexpected end of data: line 1 column 13 (char 12)); FILE is JSON "
            "lines, one lead per line",
        ),
        ("not-utf8", "{path}:1: not UTF-8 text; FILE is JSON lines, one lead per line"),
    ],
)
def test_an_unreadable_lead_file_for_publish_is_one_line_before_kafka(
    here: Path, lead_files: dict[str, Path], lead: str, expected: str
) -> None:
    path = {"missing": here / "nope.json", "directory": here}.get(lead) or lead_files[lead]
    code, lines, output, elapsed = leadstreams(
        "publish",
        "leads.x",
        str(path),
        "--bootstrap",
        f"127.0.0.1:{free_port()}",
        "--broker-wait",
        "30",
        cwd=here,
    )
    line = f"error: Invalid value for 'FILE': {expected.format(path=path)} (see {CLI} publish --help)"
    assert_one_line(code, lines, output, 2, line)
    assert elapsed < BOUND_S


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
    code, _, output, _ = leadstreams("publish", topic, str(lead_files["ok"]), cwd=nested)
    assert code == 0 and f"published 1 message(s) to {topic}" in output, output
    code, _, output, _ = leadstreams("tail", topic, "-n", "1", cwd=here)
    assert code == 0 and '"id": "l1"' in output, output


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
