"""``leadstreams console PATH...``: the web console's test console for people writing flows,
without Kafka (flows read from disk again on each request, so an edit shows at once)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import TYPE_CHECKING

import click

from agents.cli_common import EXIT_INVALID_FLOW, LOOPBACK_OPTION, local_partners
from agents.cli_errors import EXIT_USAGE, fail, port_problem, say

if TYPE_CHECKING:
    from agents.web_console.token import ConsoleToken


@click.command(name="console")
@click.argument("paths", metavar="PATH...", nargs=-1, required=True, type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=6066, type=click.IntRange(1, 65535), show_default=True, help="Its port.")
@click.option(
    "--env-file",
    "env_files",
    multiple=True,
    type=click.Path(dir_okay=False, exists=True),
    help="NAME=value lines read over the environment (repeatable): the settings the flows use.",
)
@LOOPBACK_OPTION
def console(
    paths: tuple[str, ...], host: str, port: int, env_files: tuple[str, ...], allow_loopback: bool
) -> None:
    """Serve the web console's test console for the flow files (and directories of them) at
    PATH: pick a flow, send a lead through its real partners, see each step, save it as a case.
    No Kafka. The page's address, with its token, is printed at start (env
    LEADSTREAMS_CONSOLE_TOKEN sets the token)."""
    from streams.flow_files import flow_paths
    from streams.loader import read_env_files

    local_partners(allow_loopback)
    env, env_problems = read_env_files(env_files)
    files, problems = flow_paths(paths)
    for problem in [*env_problems, *(found for each in problems.values() for found in each)]:
        say.plain(str(problem), logging.ERROR)
    if not files:
        fail(f"no flow file in {' '.join(paths)}", EXIT_INVALID_FLOW)
    listen_or_exit(host, port, "--host", "--port")
    asyncio.run(_serve(list(paths), env, host, port, console_token_or_exit()))


def listen_or_exit(host: str, port: int, host_option: str, port_option: str) -> None:
    """Exit 2 at once when the web server could not listen there (the worker's check too)."""
    taken = port_problem(host, port)
    if taken is not None:
        fail(f"{host_option} {host} {port_option} {port}: {taken}", EXIT_USAGE)


def console_token_or_exit() -> ConsoleToken:
    """The web console's token (LEADSTREAMS_CONSOLE_TOKEN, or a new one); exit 2 when too short."""
    from agents.web_console.token import ConsoleToken, WeakToken

    try:
        return ConsoleToken.from_environment(os.environ)
    except WeakToken as exc:
        fail(str(exc), EXIT_USAGE)


async def _serve(paths: list[str], env: dict[str, str], host: str, port: int, token: ConsoleToken) -> None:
    from aiohttp import web

    from agents.web_console.backends import FileBackend
    from agents.web_console.routes import ConsoleRoutes
    app = web.Application()
    app.router.add_routes(ConsoleRoutes(FileBackend(paths, env), token).routes())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    click.echo(f"test console for {' '.join(paths)}: {token.page_url(host, port)}  (Ctrl-C stops it)")
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
