"""The worker fixture of the real-broker tests: the demo partner and one worker on
topics of their own. ``partner_delay`` (seconds per answer) can be parametrized."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from worker_harness import WorkerRun, worker_with_partner


@pytest.fixture
def partner_delay() -> float:
    return 0.0


@pytest.fixture
async def worker(kafka_bootstrap: str, tmp_path: Path, partner_delay: float) -> AsyncIterator[WorkerRun]:
    async with worker_with_partner(kafka_bootstrap, tmp_path, partner_delay) as run:
        yield run
