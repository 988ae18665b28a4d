"""One clear line for every ordinary mistake of the ``leadstreams`` commands: where
their own lines go (``say``, ``fail``), click's usage errors in one line, and the
checks that need no broker (topic names, the web port)."""

from __future__ import annotations

import errno
import logging
import socket
import sys
from typing import Any, NoReturn

import click

from agents.topic_names import topic_name_problem

EXIT_USAGE = 2  # click's code for a usage error; also a port in use, a bad topic name
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


class Say:
    """Where the CLI's own lines go. On stderr as they are, except in a worker: there
    they are log records once logging is configured (``use``), so that with
    ``--log-format json`` every line it prints is JSON."""

    def __init__(self) -> None:
        self.log: logging.Logger | None = None
        self.records_only = False  # errors and progress as records too (JSON logs)

    def use(self, log: logging.Logger, records_only: bool) -> None:
        self.log, self.records_only = log, records_only

    def __call__(self, level: int, line: str) -> None:
        """info/warning lines: a record in a worker (stderr elsewhere); errors and
        progress: ``error: ...`` / the line on stderr, unless records only."""
        if self.log is not None and (self.records_only or level in (logging.INFO, logging.WARNING)):
            self.log.log(level, line)
        else:
            click.echo(f"error: {line}" if level >= logging.ERROR else line, err=True)

    def plain(self, line: str, level: int = logging.WARNING) -> None:
        """A line as it is (progress, a flow's problems); a record at ``level`` if records only."""
        if self.log is not None and self.records_only:
            self.log.log(level, line)
        else:
            click.echo(line, err=True)


say = Say()


def fail(line: str, code: int) -> NoReturn:
    """One line (``error: ...``, or a JSON record in a JSON-logging worker) and exit."""
    say(logging.ERROR, line)
    sys.exit(code)


class OneLineErrors(click.Group):
    """Click's usage errors as one line (``error: ...``, the command's --help named),
    not its four-line usage block; Ctrl-C is one line and exit 130, not ``Aborted!``."""

    def main(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs["standalone_mode"] = False  # errors come back here instead of being printed
        try:
            result = super().main(*args, **kwargs)
        except click.UsageError as exc:
            where = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            click.echo(f"error: {exc.format_message()}{where}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("error: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(result if isinstance(result, int) else 0)


class TopicName(click.ParamType):
    """A topic name Kafka accepts, checked before any request (a bad one made publish
    wait ~40 s for metadata, then print a traceback)."""

    name = "topic"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        problem = topic_name_problem(str(value))
        if problem is not None:
            self.fail(problem, param, ctx)
        return str(value)


def port_problem(host: str, port: int) -> str | None:
    """Why the worker's web server could not listen on host:port, found by binding it
    as aiohttp will (SO_REUSEADDR: a port left in TIME_WAIT is free, a listening one is
    not). A port taken between this check and the start still fails there."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        return f"cannot resolve the host ({exc}); give an address of this machine with --web-host"
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "the port is in use (another worker?); give each worker its own --web-port"
            return f"cannot listen there ({exc.strerror}); choose another --web-host or --web-port"
    return None
