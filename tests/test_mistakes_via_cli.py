"""Every ordinary mistake found before any contact with Kafka, through the real
CLI (a ``python -m agents.cli`` subprocess): one exact line, the exit code, no traceback, no
``Unclosed ...`` warning, and quickly. Every command runs in a temporary directory. The mistakes
that reach Kafka are in test_mistakes_kafka_via_cli.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mistakes_helpers import (
    BOUND_S,
    CLI,
    DEMO_FLOW,
    RULE,
    assert_one_line,
    leadstreams,
)

from examples.support.process import free_port

# The shared fixtures: here, lead_files, busy_port.
pytest_plugins = ["mistakes_fixtures"]

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


def worker_with_loglevel(
    here: Path, loglevel: str, broker_wait: str, *more: str
) -> tuple[int, list[str], str, float]:
    """The demo worker with ``--loglevel LOGLEVEL`` against a port nobody listens on."""
    return leadstreams(
        "worker",
        str(DEMO_FLOW),
        "--loglevel",
        loglevel,
        "--bootstrap",
        f"127.0.0.1:{free_port()}",
        "--broker-wait",
        broker_wait,
        *more,
        cwd=here,
    )


def test_a_bad_loglevel_is_a_choice_checked_first(here: Path) -> None:
    code, lines, output, elapsed = worker_with_loglevel(here, "verbose", "30")
    expected = (
        "error: Invalid value for '--loglevel': 'verbose' is not one of 'debug', 'info', 'warning', "
        f"'error', 'critical'. (see {CLI} worker --help)"
    )
    assert_one_line(code, lines, output, 2, expected)
    assert elapsed < BOUND_S


def test_the_loglevel_is_case_insensitive(here: Path) -> None:
    code, lines, output, _ = worker_with_loglevel(here, "WARNING", "0", "--web-port", str(free_port()))
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


# What publish says about its FILE after the bad lines (issue 22: every entry a JSON object).
PUBLISH_FILE = (
    "FILE is JSON lines (one JSON object, a lead, per line) or one JSON array of objects "
    "(--allow-bad sends bad lines as-is)"
)


@pytest.mark.parametrize(
    ("lead", "expected"),
    [
        ("missing", "'{path}': No such file or directory"),
        ("directory", "'{path}': Is a directory"),
        (
            "not-json",
            "{path}:1: not JSON (unexpected end of data: line 1 column 13 (char 12)); nothing sent: "
            + PUBLISH_FILE,
        ),
        ("not-utf8", "{path}:1: not UTF-8 text; nothing sent: " + PUBLISH_FILE),
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
