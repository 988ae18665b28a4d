"""The ``leadstreams`` command line: the group and its commands, each group of commands
in its own module (agents.cli_flow, agents.cli_worker, agents.cli_topics, agents.cli_tail,
agents.cli_replay, agents.cli_trace, agents.cli_status)."""

from __future__ import annotations

import click

from agents.cli_console import console
from agents.cli_errors import OneLineErrors
from agents.cli_flow import check, test_flow, try_flow
from agents.cli_replay import replay
from agents.cli_status import status
from agents.cli_tail import tail
from agents.cli_topics import publish
from agents.cli_trace import trace
from agents.cli_worker import worker

__all__ = ["main", "worker"]


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="leadstreams", message="%(prog)s %(version)s")
def main() -> None:
    """leadstreams: custom HTTP API integrations over a Kafka stream of leads."""
    from agents.package_check import check_agents_package

    check_agents_package()


for command in (check, try_flow, test_flow, console, worker, publish, tail, replay, trace, status):
    main.add_command(command)


if __name__ == "__main__":  # as the `leadstreams` entry point: no logging set up here
    main()
