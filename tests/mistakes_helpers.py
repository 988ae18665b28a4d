"""The real CLI as a subprocess, run the way test_mistakes*_via_cli.py judge it (one exact line,
the exit code, no traceback, the time it took); their fixtures are in mistakes_fixtures.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

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
