"""Structured logs: JSON lines, request records from the engine, secrets masked."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import orjson
import pytest
from aiohttp import web
from helpers import make_flow, run_once, serve
from pytest_aiohttp import AiohttpServer

from agents.logs import JsonFormatter, logging_config, mask_log_records
from streams.masking import Masker

SECRET = "s3cr3t-value-42"


@pytest.fixture
def masked_records() -> Iterator[None]:
    original = logging.getLogRecordFactory()
    mask_log_records(Masker([SECRET]))
    yield
    logging.setLogRecordFactory(original)


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.getLogger("t").makeRecord("t", logging.INFO, __file__, 1, message, args, None, extra=extra)
    return made


def test_json_lines_carry_the_request_fields() -> None:
    line = JsonFormatter().format(
        record("POST %s -> %s", "/x", 200, step="check", status=200, elapsed_ms=3.2)
    )
    entry = orjson.loads(line)
    assert entry["message"] == "POST /x -> 200"
    assert (entry["level"], entry["logger"], entry["step"], entry["status"]) == ("info", "t", "check", 200)
    assert entry["ts"].endswith("Z")


def test_secrets_are_masked_in_messages_and_tracebacks(masked_records: None) -> None:
    try:
        raise ValueError(f"partner rejected key {SECRET}")
    except ValueError:
        import sys

        exc_info = sys.exc_info()
    made = logging.getLogger("t").makeRecord("t", logging.ERROR, __file__, 1, "key=%s", (SECRET,), exc_info)
    line = JsonFormatter().format(made)
    assert SECRET not in line
    assert "key=***" in line and "partner rejected key ***" in line


async def test_engine_logs_each_request_and_bodies_only_when_asked(
    aiohttp_server: AiohttpServer, caplog: pytest.LogCaptureFixture, masked_records: None
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"echo": SECRET})

    app = web.Application()
    app.router.add_post("/check", answer)
    base = await serve(aiohttp_server, app)
    step = {"name": "check", "request": {"method": "POST", "url": "/check", "json": {"k": SECRET}}}
    flow = make_flow(base, [step])
    caplog.set_level(logging.DEBUG)
    bodies_logger = logging.getLogger("leadstreams.http.bodies")
    bodies_logger.setLevel(logging.WARNING)  # as the worker configures it without --log-bodies
    await run_once(flow, {"id": "L1"})
    [request_log] = [r for r in caplog.records if r.name == "leadstreams.http"]
    assert (request_log.step, request_log.status, request_log.method) == ("check", 200, "POST")
    assert not [r for r in caplog.records if r.name == "leadstreams.http.bodies"]

    caplog.clear()
    bodies_logger.setLevel(logging.DEBUG)
    try:
        await run_once(flow, {"id": "L2"})
    finally:
        bodies_logger.setLevel(logging.NOTSET)
    [bodies] = [r for r in caplog.records if r.name == "leadstreams.http.bodies"]
    assert SECRET not in bodies.getMessage() and "***" in bodies.getMessage()


def test_logging_config_is_valid_for_both_formats() -> None:
    import logging.config

    for fmt in ("text", "json"):
        logging.config.dictConfig(logging_config(fmt, "info", bodies=False))
    assert logging.getLogger("leadstreams.http.bodies").level == logging.WARNING
