"""What the CLI's commands share: the error console, loading a flow or exiting with its
problems, and --allow-loopback."""

from __future__ import annotations

import logging
import sys

import click
from rich.console import Console

from agents.cli_errors import fail, say
from streams.flow import Flow
from streams.loader import load_flow
from streams.problems import FlowFileError

err = Console(stderr=True)
EXIT_INVALID_FLOW = 2


def load_or_exit(path: str) -> Flow:
    try:
        return load_flow(path)
    except FlowFileError as exc:
        problems = exc.problems
        if len(problems) == 1 and problems[0].line == 0:  # unreadable, not UTF-8: one line
            fail(f"flow {path}: {problems[0].message}", EXIT_INVALID_FLOW)
        for problem in problems:
            say.plain(str(problem), logging.ERROR)
        say.plain(f"{len(problems)} problem(s) in {path}", logging.ERROR)
        sys.exit(EXIT_INVALID_FLOW)


LOOPBACK_OPTION = click.option(
    "--allow-loopback",
    is_flag=True,
    envvar="LEADSTREAMS_ALLOW_LOOPBACK",
    help="Development only: let every integration reach loopback and private addresses (a partner "
    "stand-in on this machine or in a compose network), whatever the flow says. Metadata and "
    "link-local addresses stay refused (env LEADSTREAMS_ALLOW_LOOPBACK=1).",
)


def local_partners(allow: bool) -> None:
    from streams.address_policy import allow_local_partners

    allow_local_partners(allow)
