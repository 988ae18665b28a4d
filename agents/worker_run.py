"""Running a built worker app: logging, signals, the loop watchdog and Faust's worker."""

from __future__ import annotations

from agents.faust_seam import LeadApp, LeadWorker
from agents.logs import logging_config


def run_worker(app: LeadApp, loglevel: str, log_format: str, log_bodies: bool) -> None:
    """Run ``app`` until it is stopped (SIGINT, SIGTERM or a crash)."""
    runner = LeadWorker(
        app,
        loglevel=loglevel.upper(),
        redirect_stdouts=False,
        logging_config=logging_config(log_format, loglevel, log_bodies),
    )
    runner.execute_from_commandline()
