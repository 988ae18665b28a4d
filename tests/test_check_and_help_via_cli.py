"""The command line, run as a user would (a subprocess of the installed entry point)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TWO_MISTAKES = """\
version: 1
name: broken
topics: {input: a, enriched: b, errors: c}
steps:
  - name: call
    request:
      method: FETCH
      url: http://127.0.0.1:1/x
    colour: blue
"""


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )


def test_check_lists_every_problem_with_lines_and_exits_2(tmp_path: Path) -> None:
    flow = tmp_path / "broken.yaml"
    flow.write_text(TWO_MISTAKES)
    result = run_cli("check", str(flow))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert f"{flow}:7:7: steps.0.request.method: method must be one of GET, POST" in "\n".join(lines)
    assert f"{flow}:9:5: steps.0.colour: unknown key 'colour'" in lines
    assert "Traceback" not in result.stderr


def test_check_accepts_the_demo_flow() -> None:
    result = run_cli(
        "check", "examples/flows/demo.yaml", env={"INTERNAL_API_KEY": "k" * 8, "PATH": "/usr/bin:/bin"}
    )
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_check_of_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("check", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr and "Traceback" not in result.stderr


def test_every_command_has_help() -> None:
    for command in ("check", "worker", "publish", "tail"):
        result = run_cli(command, "--help")
        assert result.returncode == 0 and "Usage:" in result.stdout


def test_check_lists_builder_problems_even_when_the_schema_fails(tmp_path: Path) -> None:
    flow = tmp_path / "broken.yaml"
    flow.write_text(
        "version: 1\nname: b\ntopics: {input: a, enriched: b, errors: c}\nsteps:\n"
        "  - name: one\n    integration: nope\n    timeout: fast\n    request:\n"
        '      url: "/x/{{ lead.id "\n  - name: one\n    request: {url: /y}\n'
    )
    result = run_cli("check", str(flow))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[:4] == [
        f"{flow}:6:5: steps.0.integration: unknown integration 'nope' (known: none defined)",
        f"{flow}:7:5: steps.0.timeout: durations look like 200ms, 2s, 5m (a plain number is seconds,"
        " more than 0) (got 'fast')",
        f"{flow}:9:7: steps.0.request.url: template syntax: unexpected end of template, "
        "expected 'end of print statement'.",
        f"{flow}:10:5: steps.1.name: duplicate step name 'one'",
    ]


def test_check_of_a_file_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    flow = tmp_path / "latin1.yaml"
    flow.write_bytes("name: caf\xe9\n".encode("latin-1"))
    result = run_cli("check", str(flow))
    assert result.returncode == 2
    assert "not UTF-8 text" in result.stderr and "Traceback" not in result.stderr
