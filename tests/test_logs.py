"""Structured logs: JSON lines, request records from the engine, secrets masked."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import orjson
import pytest
from aiohttp import web
from helpers import make_flow, run_once, serve
from pytest_aiohttp import AiohttpServer

from agents.log_policy import LogPolicy, mark_started, reset_started
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


def test_json_lines_mask_the_request_fields(masked_records: None) -> None:
    """Review #2: the message was masked but the `url` and `body` fields of the same JSON line
    were not (an API key in the query showed in clear with --log-format json --loglevel debug)."""
    made = record(
        "GET %s", f"https://partner.example/v1?api_key={SECRET}",
        url=f"https://partner.example/v1?api_key={SECRET}", body=f'{{"key": "{SECRET}"}}', status=200,
    )  # fmt: skip
    entry = orjson.loads(JsonFormatter().format(made))
    assert SECRET not in str(entry)
    assert entry["url"] == "https://partner.example/v1?api_key=***" and entry["body"] == '{"key": "***"}'
    assert entry["message"] == "GET https://partner.example/v1?api_key=***" and entry["status"] == 200


async def test_json_request_log_of_a_key_in_the_query_is_masked(
    aiohttp_server: AiohttpServer, caplog: pytest.LogCaptureFixture, masked_records: None
) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/check", answer)
    base = await serve(aiohttp_server, app)
    auth = {"type": "api_key", "value": "{{ settings.key }}", "query": "api_key"}
    step = {"name": "check", "request": {"method": "GET", "url": "/check"}}
    flow = make_flow(base, [step], integration={"auth": auth}, settings={"key": SECRET})
    caplog.set_level(logging.DEBUG, logger="leadstreams.http")
    await run_once(flow, {"id": "L1"})
    [request_log] = [r for r in caplog.records if r.name == "leadstreams.http"]
    entry = orjson.loads(JsonFormatter().format(request_log))
    assert SECRET not in str(entry) and entry["url"].endswith("/check?api_key=***")


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


def library_record(name: str, level: int, message: str) -> logging.LogRecord:
    return logging.getLogger(name).makeRecord(name, level, __file__, 1, message, (), None)


def passed(policy: LogPolicy, made: logging.LogRecord) -> tuple[str, str] | None:
    return (made.levelname, made.getMessage()) if policy.filter(made) else None


@pytest.fixture
def starting() -> Iterator[None]:
    reset_started()
    yield
    reset_started()


def test_library_chatter_is_debug(starting: None) -> None:
    info, debug = LogPolicy("INFO"), LogPolicy("DEBUG")
    chatter = [
        ("faust.transport.drivers.aiokafka", "[^--Producer]: Starting..."),
        ("agents.faust_seam", "[^-LeadApp]: Stopping..."),  # mode's services log under their module
        ("aiokafka.consumer.group_coordinator", "(Re-)joining group g"),
        ("faust.worker", "Ready"),
    ]
    for name, message in chatter:
        assert passed(info, library_record(name, logging.INFO, message)) is None
        assert passed(debug, library_record(name, logging.INFO, message)) == ("DEBUG", message)
    ours = library_record("agents.app", logging.INFO, "assigned partitions: leads.incoming[0]")
    assert passed(info, ours) == ("INFO", "assigned partitions: leads.incoming[0]")


def test_the_start_up_coordinator_error_is_debug_until_the_worker_started(starting: None) -> None:
    policy = LogPolicy("INFO")
    message = "Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError"
    assert (
        passed(policy, library_record("aiokafka.consumer.group_coordinator", logging.ERROR, message)) is None
    )
    mark_started()
    later = library_record("aiokafka.consumer.group_coordinator", logging.ERROR, message)
    assert passed(policy, later) == ("WARNING", message)


def test_a_flood_is_one_warning_per_cause_with_a_count_every_window() -> None:
    clock = [0.0]
    policy = LogPolicy("INFO", window=30, clock=lambda: clock[0])
    refused = "Unable connect to node with id 1: [Errno 111] Connect call failed ('127.0.0.1', {port})"
    fetch = "Failed fetch messages from 1: NodeNotReadyError"
    printed = []
    for tick in range(1000):  # 65 a second, over 61 s, two causes; the port varies
        clock[0] = tick * 61 / 1000
        for made in (library_record("aiokafka", logging.ERROR, refused.format(port=49000 + tick % 7)),
                     library_record("aiokafka.consumer.fetcher", logging.ERROR, fetch)):  # fmt: skip
            if result := passed(policy, made):
                printed.append(result)
    assert printed == [
        ("WARNING", refused.format(port=49000)),
        ("WARNING", fetch),
        ("WARNING", refused.format(port=49000 + 492 % 7) + " (492 times in the last 30s)"),
        ("WARNING", fetch + " (492 times in the last 30s)"),
        ("WARNING", refused.format(port=49000 + 984 % 7) + " (492 times in the last 30s)"),
        ("WARNING", fetch + " (492 times in the last 30s)"),
    ]
    ours = [library_record("agents.output", logging.WARNING, "3 outputs not acknowledged") for _ in range(3)]
    assert all(passed(policy, made) for made in ours)  # our own lines are never folded


def test_json_format_makes_every_line_json(capsys: pytest.CaptureFixture[str]) -> None:
    import logging.config

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logging.config.dictConfig(logging_config("json", "info", bodies=False))
    try:
        logging.getLogger("agents.app").info("assigned partitions: %s", "leads.incoming[0]")
        logging.getLogger("faust.worker").info("[^Worker]: Starting...")  # chatter: not printed
        logging.getLogger("aiokafka").error("Unable to update metadata from [1]")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    lines = capsys.readouterr().err.splitlines()
    entries = [orjson.loads(line) for line in lines]
    assert [(e["level"], e["message"]) for e in entries] == [
        ("info", "assigned partitions: leads.incoming[0]"),
        ("warning", "Unable to update metadata from [1]"),
    ]
