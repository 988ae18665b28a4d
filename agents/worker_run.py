"""Running a built worker app: logging, signals and the Faust worker around it."""

from __future__ import annotations

import sys

import faust

from agents.logs import logging_config


def run_worker(app: faust.App, loglevel: str, log_format: str, log_bodies: bool) -> None:
    """Run ``app`` until it is stopped (SIGINT, SIGTERM or a crash)."""
    runner = faust.Worker(
        app,
        loglevel=loglevel.upper(),
        redirect_stdouts=False,
        logging_config=logging_config(log_format, loglevel, log_bodies),
    )
    if not sys.stdout.isatty():
        runner.spinner = None  # its escape codes only garble log files
    runner.execute_from_commandline()
