"""What starts a reload of the worker's flows: a change under its paths (inotify, through
watchfiles), SIGHUP, ``POST /flows/reload`` (agents.web_pages).

The directories are watched, not the files: editors replace a file by renaming a new one over
it, and a Kubernetes ConfigMap volume swaps its ``..data`` symlink to a new directory, so a
watch on the file itself would go quiet after the first change. Any change rescans; what did
not change is left alone (agents.flow_set compares versions)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import faust
import watchfiles

from agents.flow_set import FlowSet

log = logging.getLogger("leadstreams.flows")

SETTLE_MS = 500  # changes within this are one reload (a ConfigMap's swap is several events)


def watched_directories(paths: list[str]) -> list[str]:
    """The directories named, and the directory of each file named."""
    folders = [path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path)) for path in paths]
    return [folder for folder in dict.fromkeys(folders) if os.path.isdir(folder)]


def watch_flows(app: faust.App, flows: FlowSet, watch: bool) -> None:
    @app.task
    async def reload_on_change() -> None:
        """SIGHUP rescans (with or without --watch); with it, so does a change in a directory."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(reload_safely(flows, "SIGHUP")))
        folders = watched_directories(flows.paths)
        if not (watch and folders):
            return
        log.info("watching %s for flow changes", ", ".join(folders))
        async for _ in watchfiles.awatch(*folders, watch_filter=None, debounce=SETTLE_MS, recursive=False):
            await reload_safely(flows, "a flow file changed")


async def reload_safely(flows: FlowSet, why: str) -> None:
    """A reload that failed unexpectedly is logged; the flows that ran keep running."""
    try:
        await flows.reload(why)
    except Exception:
        log.exception("reloading the flows (%s) failed; the flows running keep running", why)
