"""The worker fixture of the real-broker tests: the demo partner and one worker on
topics of their own. ``partner_delay`` (seconds per answer) can be parametrized."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from partner_api import create_partner_app
from worker_harness import WorkerRun

from agents.process import serve_app


@pytest.fixture
def partner_delay() -> float:
    return 0.0


@pytest.fixture
async def worker(kafka_bootstrap: str, tmp_path: Path, partner_delay: float) -> AsyncIterator[WorkerRun]:
    api_key = "it-key-" + uuid.uuid4().hex
    partner = create_partner_app(api_key, delay=partner_delay)
    runner, url = await serve_app(partner)
    run = WorkerRun(kafka_bootstrap, url, api_key, tmp_path, partner=partner)
    run.start()
    try:
        yield run
    finally:
        run.stop()
        await runner.cleanup()
