"""`leadstreams replay` end to end: a real worker writes error events while its partner
is down; replayed once the partner is back, the leads come out enriched; a second replay
sends nothing; bad inputs only with --include-bad."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from partner_api import API_KEY, DELAY, REQUESTS, check_blacklist
from worker_harness import WorkerRun

from agents.kafka_io import Record, collect, publish
from agents.record_view import REPLAYED_FROM
from agents.topic_reader import TopicReader
from examples.support.process import serve_app

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def partner(api_key: str, state: dict[str, bool]) -> web.Application:
    """The demo partner, answering 401 (an error outcome, not retried) while ``state['down']``."""

    @web.middleware
    async def outage(request: web.Request, handler: Handler) -> web.StreamResponse:
        if state["down"]:
            return web.json_response({"error": "partner outage"}, status=401)
        return await handler(request)

    app = web.Application(middlewares=[outage])
    app[API_KEY], app[DELAY], app[REQUESTS] = api_key, 0.0, Counter()
    app.router.add_post("/blacklist/check", check_blacklist)
    return app


def leadstreams(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


async def read_until(bootstrap: str, topic: str, done: Callable[[list[Record]], bool]) -> list[Record]:
    records = await collect(bootstrap, [topic], done, timeout=60)
    assert done(records), f"{topic}: {[r.value for r in records]}"
    return records


async def replay_headers(bootstrap: str, topic: str) -> dict[int, str]:
    """Offset -> leadstreams-replayed-from of the input topic's replayed messages."""
    async with TopicReader(bootstrap, [topic]) as reader:
        return {
            record.offset: (record.header(REPLAYED_FROM) or b"").decode()
            async for record in reader.to_end(dict(reader.begin))
            if record.header(REPLAYED_FROM) is not None
        }


async def test_errors_replayed_after_an_outage_come_out_enriched_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    key, state = "it-key-" + uuid.uuid4().hex, {"down": True}
    runner, url = await serve_app(partner(key, state))
    run = WorkerRun(kafka_bootstrap, url, key, tmp_path)
    topics = run.topics
    flow = run.flow_file()
    run.start()
    try:
        leads = [{"id": f"r{n}", "email": f"r{n}@example.com"} for n in range(3)]
        messages = [(lead["id"].encode(), orjson.dumps(lead)) for lead in leads]
        await publish(kafka_bootstrap, topics["incoming"], [*messages, (None, b"not json")])
        errors = await read_until(kafka_bootstrap, topics["errors"], lambda r: len(r) >= 4)
        # Where they are (transaction markers take offsets too).
        lead_errors = [f"{topics['errors']}/{r.partition}/{r.offset}" for r in errors
                       if orjson.loads(r.value).get("id") in {"r0", "r1", "r2"}]  # fmt: skip

        dry = await asyncio.to_thread(
            leadstreams, "replay", str(flow), "--dry-run", "--bootstrap", kafka_bootstrap
        )
        assert dry.returncode == 0, dry.stderr
        assert "would replay 3 of 4 matching events (0 already replayed, 1 bad inputs skipped)" in dry.stderr
        assert sorted(line.split()[2] for line in dry.stdout.splitlines()) == ["key=r0", "key=r1", "key=r2"]
        assert all(
            "error check_blacklist: HTTP 401: partner outage" in line for line in dry.stdout.splitlines()
        ), dry.stdout

        state["down"] = False
        sent = await asyncio.to_thread(leadstreams, "replay", str(flow), "--id", "r0", "--id", "r1",
                                       "--id", "r2", "--outcome", "error", "--reason", "401",
                                       "--bootstrap", kafka_bootstrap)  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        assert "replayed 3 of 3 matching events (0 already replayed, 0 bad inputs skipped)" in sent.stderr
        enriched = await read_until(kafka_bootstrap, topics["enriched"], lambda r: len(r) >= 3)
        events = [orjson.loads(r.value) for r in enriched]
        assert sorted(e["id"] for e in events) == ["r0", "r1", "r2"]
        assert {e["outcome"] for e in events} == {"success"}
        assert all(e["input"]["offset"] >= 4 for e in events)  # the replayed copies, after the 4 originals

        inputs = await read_until(kafka_bootstrap, topics["incoming"], lambda r: len(r) >= 7)
        assert [r.value for r in inputs[4:]] == [r.value for r in inputs[:3]]  # the original bytes
        replayed = await replay_headers(kafka_bootstrap, topics["incoming"])
        assert sorted(replayed.values()) == sorted(lead_errors)
        assert set(replayed) == {4, 5, 6}

        again = await asyncio.to_thread(leadstreams, "replay", str(flow), "--bootstrap", kafka_bootstrap)
        assert "replayed 0 of 4 matching events (3 already replayed, 1 bad inputs skipped)" in again.stderr

        bad = await asyncio.to_thread(
            leadstreams, "replay", str(flow), "--include-bad", "--bootstrap", kafka_bootstrap
        )
        assert "replayed 1 of 4 matching events (3 already replayed, 0 bad inputs skipped)" in bad.stderr
        inputs = await read_until(kafka_bootstrap, topics["incoming"], lambda r: len(r) >= 8)
        assert inputs[7].value == b"not json"
        run.assert_alive()
    finally:
        run.stop()
        await runner.cleanup()
