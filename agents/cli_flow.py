"""The flow commands: ``check`` (validate), ``try`` (one lead against the real partners,
optionally recorded as a case) and ``test`` (the saved cases, offline)."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING, Any

import click
import orjson
from rich.console import Console
from rich.markup import escape

from agents.cli_common import EXIT_INVALID_FLOW, LOOPBACK_OPTION, err, load_or_exit, local_partners
from agents.cli_errors import fail, say
from streams.problems import FlowFileError

if TYPE_CHECKING:
    from streams.console_runs import ConsoleRun


@click.command()
@click.argument("flows", metavar="FLOW...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--env-file",
    "env_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="NAME=value lines read over the environment (repeatable): check with a deployment's values.",
)
def check(flows: tuple[str, ...], env_files: tuple[str, ...]) -> None:
    """Validate each FLOW; list every problem as FILE:LINE:COLUMN: path: message (exit 2)."""
    from streams.loader import check_files

    loaded, problems = check_files(flows, env_files=env_files)
    for problem in problems:
        say.plain(str(problem), logging.ERROR)
    if problems:
        files = ", ".join(dict.fromkeys(problem.file for problem in problems))
        say.plain(f"{len(problems)} problem(s) in {files}", logging.ERROR)
        sys.exit(EXIT_INVALID_FLOW)
    for flow in loaded:
        steps = len(flow.steps)
        topics = "no topics (the worker needs them)" if flow.topics is None else f"input {flow.topics.input}"
        click.echo(f"{flow.source_file}: ok — flow {flow.name!r}, {steps} step(s), {topics}")


@click.command(name="try")
@click.argument("flow", type=click.Path(dir_okay=False))
@click.option(
    "--lead", "lead_file", required=True, type=click.File("rb"), help="The lead, a JSON file (- for stdin)."
)
@click.option("--step", "step_name", default=None, help="Run up to this step and show only it.")
@click.option("--verbose", "-v", is_flag=True, help="Show response headers, whole bodies and parsed values.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
@click.option(
    "--record",
    is_flag=True,
    help="Append this run to the saved cases as a case: every answer per step in order, the "
    "outcome, reasons, mapped fields, price and reference as expected values, secrets masked.",
)
@click.option(
    "--cases",
    "cases_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="With --record: the cases file (default: FLOW's name with .cases.yaml).",
)
@click.option("--case-name", default=None, help="With --record: the case's name (default: LEAD-ID: OUTCOME).")
@LOOPBACK_OPTION
def try_flow(
    flow: str,
    lead_file: click.utils.LazyFile,
    step_name: str | None,
    verbose: bool,
    as_json: bool,
    record: bool,
    cases_file: str | None,
    case_name: str | None,
    allow_loopback: bool,
) -> None:
    """Test console: send FLOW's real requests for one lead and show each step
    (request with secrets masked, raw response, mapped fields, outcome, timing).
    Exit 1 when the lead's outcome is error."""
    from streams.console_runs import run_lead

    local_partners(allow_loopback)
    loaded = load_or_exit(flow)
    lead = _read_lead(lead_file)
    if step_name is not None and step_name not in {step.name for step in loaded.steps}:
        raise click.BadParameter(f"no step {step_name!r} in {flow}", param_hint="--step")
    if record and step_name is not None:  # `leadstreams test` runs whole flows
        raise click.BadParameter("a recorded case is a whole run: drop --step", param_hint="--record")
    run = asyncio.run(run_lead(loaded, lead, only_step=step_name))
    report = run.report(verbose, step_name)
    if as_json:
        click.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        from agents.console_view import print_report

        print_report(report, Console())
    if record:
        _record(run, cases_file, case_name)
    sys.exit(1 if report["outcome"] == "error" else 0)


def _record(run: ConsoleRun, cases_file: str | None, case_name: str | None) -> None:
    """Save the run as a case; say where on stderr (stdout may be --json)."""
    import os

    from streams.testcases import cases_path_for

    path = cases_file or cases_path_for(run.flow.source_file)
    try:
        saved = run.save(case_name, os.environ, path)
    except FlowFileError as exc:
        for problem in exc.problems:
            say.plain(str(problem), logging.ERROR)
        _show_unsaved(*run.case(case_name, os.environ))
        fail(f"not recorded: {path} is not a valid cases file", EXIT_INVALID_FLOW)
    except OSError as exc:  # no such folder, no permission, disk full...
        _show_unsaved(*run.case(case_name, os.environ))
        fail(f"not recorded: cannot write {path}: {exc.strerror or exc}", EXIT_INVALID_FLOW)
    err.print(f"recorded case {saved.name!r} in {saved.path}", highlight=False, markup=False)
    if saved.rewritten:
        err.print(f"note: {saved.path} was rewritten whole (its cases: list is not last or not a "
                  "block list): comments dropped", highlight=False, markup=False)  # fmt: skip
    if saved.missing_settings:
        lacking = ", ".join(saved.missing_settings)
        err.print(f"note: the settings: of {saved.path} lack {lacking}; leadstreams test reads them "
                  "from the environment", highlight=False, markup=False)  # fmt: skip


def _show_unsaved(case: dict[str, Any], settings: dict[str, str]) -> None:
    """The partners were called already: the recording goes to stderr as a cases file of its
    own (stdout may be --json), so it can be saved by hand instead of run again."""
    from streams.case_file import case_text

    err.print("# the recorded case, not saved:", highlight=False, markup=False)
    err.print(case_text(case, settings), end="", highlight=False, markup=False, soft_wrap=True)


@click.command(name="test")
@click.argument("flow", type=click.Path(dir_okay=False))
@click.option(
    "--cases",
    "cases_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="Saved cases (default: FLOW's name with .cases.yaml).",
)
@LOOPBACK_OPTION
def test_flow(flow: str, cases_file: str | None, allow_loopback: bool) -> None:
    """Run FLOW's saved test cases offline (recorded responses, no network); exit 1 on any failure.
    --allow-loopback is accepted as on try and worker; the replay never connects anywhere."""
    from streams.testcases import run_cases

    local_partners(allow_loopback)
    try:
        reports = asyncio.run(run_cases(flow, cases_file))
    except FlowFileError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        sys.exit(EXIT_INVALID_FLOW)
    out = Console()
    for report in reports:
        mark = "[green]PASS[/]" if report.passed else "[red]FAIL[/]"
        out.print(f"{mark} {escape(report.name)}", highlight=False)  # a name may hold [brackets]
        for mismatch in report.mismatches:
            out.print(f"     {mismatch}", highlight=False, markup=False)
    failed = sum(not r.passed for r in reports)
    out.print(f"{len(reports) - failed} passed, {failed} failed", highlight=False)
    sys.exit(1 if failed else 0)


def _read_lead(file: click.utils.LazyFile) -> dict[str, object]:
    data = file.read()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise click.BadParameter(f"{file.name}: not UTF-8 text ({exc.reason} at byte {exc.start})",
                                 param_hint="--lead") from None  # fmt: skip
    try:
        lead = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"{file.name}: not valid JSON: {exc}", param_hint="--lead") from None
    if not isinstance(lead, dict):
        raise click.BadParameter(f"{file.name}: a lead must be a JSON object", param_hint="--lead")
    return lead
