"""The activity log: partner failures per integration and lead counts per flow, at info
level, once a minute (the first failure of an outage at once). Pure counters with a fake
clock, then the engine's counting through LeadPipeline with real partners (a closed
port, an aiohttp server answering 503 or 200)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from helpers import make_flow
from pytest_aiohttp import AiohttpServer
from resilience_helpers import closed_port_url
from yarl import URL

from examples.support.process import wait_for
from streams.activity import ActivityLog, FlowActivity, Line
from streams.events import Source
from streams.http_client import HttpClient
from streams.pipeline import LeadPipeline
from streams.runner import FlowRunner

REFUSED = "connection refused by 127.0.0.1:1"
SOURCE = Source("in", 0, 0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def activity(clock: FakeClock) -> ActivityLog:
    return ActivityLog(clock)


def messages(lines: list[Line]) -> list[str]:
    return [line.message for line in lines]


def p95_ms(message: str) -> float:
    found = re.search(r"p95 ([\d.]+) ms$", message)
    assert found, message
    return float(found[1])


def test_nothing_is_reported_while_idle(activity: ActivityLog, clock: FakeClock) -> None:
    activity.flow("demo")
    clock.now += 60
    assert activity.report() == []


def test_flow_stats_count_each_outcome_with_a_p95(activity: ActivityLog, clock: FakeClock) -> None:
    flow = activity.flow("demo")
    for outcome, count in (("success", 12), ("failure", 5), ("error", 2)):
        for _ in range(count):
            flow.lead(outcome, 0.2)
    flow.lead("deferred", 9.0)  # the slowest 5%: above the p95
    clock.now += 60
    [line] = activity.report()
    assert line.level == logging.INFO and line.fields == {"flow": "demo"}
    assert line.message.startswith(
        "flow demo: 20 leads in the last 60s: 12 success, 5 failure, 2 error, 1 deferred; p95 "
    )
    assert 200 <= p95_ms(line.message) <= 210  # the upper bound of 0.2 s's bucket (5% wide)


def test_each_report_starts_a_new_window(activity: ActivityLog, clock: FakeClock) -> None:
    flow = activity.flow("demo")
    flow.lead("success", 0.001)
    clock.now += 90  # a late report says how long its window was
    assert messages(activity.report())[0].startswith(
        "flow demo: 1 leads in the last 90s: 1 success, 0 failure"
    )
    clock.now += 60
    assert activity.report() == []


def test_a_partner_that_fails_every_request_is_unreachable(activity: ActivityLog, clock: FakeClock) -> None:
    flow = activity.flow("demo")
    for _ in range(50):
        flow.failed("api", REFUSED)
    clock.now += 60
    [line] = activity.report()
    assert (line.level, line.fields) == (logging.WARNING, {"flow": "demo", "integration": "api"})
    assert line.message == f"partner api unreachable: 50 of 50 requests failed in the last 60s ({REFUSED})"


def test_partial_failures_name_the_most_frequent_reasons(activity: ActivityLog, clock: FakeClock) -> None:
    flow = activity.flow("demo")
    for _ in range(30):
        flow.answered("api")
    for _ in range(6):
        flow.failed("api", REFUSED)
    for _ in range(3):
        flow.failed("api", "timeout after 5s")
    for n in range(4):  # more distinct reasons than a line shows
        flow.failed("api", f"HTTP 50{n}", answered=True)
    clock.now += 60
    assert messages(activity.report()) == [
        "partner api unreachable: 13 of 43 requests failed in the last 60s "
        f"(6x {REFUSED}, 3x timeout after 5s, 1x HTTP 500, 3 other)"
    ]


def test_5xx_answers_alone_are_failing_not_unreachable(activity: ActivityLog, clock: FakeClock) -> None:
    flow = activity.flow("demo")
    flow.answered("api")
    flow.failed("api", "HTTP 503", answered=True)
    clock.now += 60
    assert messages(activity.report()) == [
        "partner api failing: 1 of 2 requests failed in the last 60s (HTTP 503)"
    ]


def test_distinct_reasons_kept_are_bounded(activity: ActivityLog) -> None:
    flow = activity.flow("demo")
    for n in range(1000):
        flow.failed("api", f"reason {n}")
    assert len(flow.reasons["api"]) == 20 and flow.failures["api"] == 1000


def test_the_first_failure_of_an_outage_is_logged_at_once(
    activity: ActivityLog, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    flow = activity.flow("demo")
    caplog.set_level(logging.INFO, logger="leadstreams.activity")

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    flow.answered("api")
    assert warnings() == []
    flow.failed("api", REFUSED)
    flow.failed("api", REFUSED)  # the same outage: counted, not logged again before the report
    assert warnings() == [
        f"partner api unreachable: {REFUSED} (first failure; counted every minute while it lasts)"
    ]
    assert caplog.records[0].integration == "api"  # type: ignore[attr-defined]
    clock.now += 60
    activity.log_report()
    assert len(warnings()) == 2  # the minute's count
    flow.failed("api", REFUSED)  # still the same outage: no new announcement
    clock.now += 60
    activity.log_report()
    assert len(warnings()) == 3
    clock.now += 60
    activity.log_report()  # no request at all (e.g. a circuit open): nothing said, outage not over
    flow.failed("api", "HTTP 502", answered=True)
    assert len(warnings()) == 3
    clock.now += 60
    activity.log_report()
    flow.answered("api")
    clock.now += 60
    activity.log_report()  # a window of answers: over
    assert (
        caplog.records[-1].getMessage()
        == "partner api answering again: 1 requests in the last 60s, none failed"
    )
    flow.failed("api", "timeout after 5s")  # a new outage is announced at once again
    assert (
        warnings()[-1]
        == "partner api unreachable: timeout after 5s (first failure; counted every minute while it lasts)"
    )


async def test_log_every_logs_each_period(activity: ActivityLog, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="leadstreams.activity")
    flow = activity.flow("demo")
    flow.lead("success", 0.01)
    task = asyncio.ensure_future(activity.log_every(0.01))
    try:
        await wait_for(
            lambda: any("flow demo: 1 leads" in r.getMessage() for r in caplog.records), 5, "a report"
        )
        flow.lead("error", 0.01)
        await wait_for(lambda: any("flow demo: 1 leads" in r.getMessage() and "1 error" in r.getMessage()
                                   for r in caplog.records), 5, "a second report")  # fmt: skip
    finally:
        task.cancel()


# --- counted by the engine ----------------------------------------------------------------------


@asynccontextmanager
async def pipeline_at(base_url: str, activity: ActivityLog) -> AsyncIterator[LeadPipeline]:
    flow = make_flow(
        base_url, [{"name": "call", "request": {"url": "/x"}}], integration={"retry": {"attempts": 1}}
    )
    client = HttpClient()
    try:
        yield LeadPipeline(FlowRunner(flow, client, activity=activity))
    finally:
        await client.close()


async def test_the_engine_counts_a_refusing_partner_and_its_leads(
    activity: ActivityLog, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="leadstreams.activity")
    url = URL(closed_port_url())
    refused = f"connection refused by 127.0.0.1:{url.port}"
    async with pipeline_at(str(url), activity) as pipeline:
        await asyncio.gather(*(pipeline.process(b'{"email": "a@b.example"}', SOURCE) for _ in range(50)))
        await pipeline.process(b"{not json", SOURCE)  # a bad input is an error lead too, with no request
    assert [r.getMessage() for r in caplog.records] == [
        f"partner api unreachable: {refused} (first failure; counted every minute while it lasts)"
    ]
    clock.now += 60
    lines = messages(activity.report())
    assert lines[0] == f"partner api unreachable: 50 of 50 requests failed in the last 60s ({refused})"
    assert lines[1].startswith(
        "flow test-flow: 51 leads in the last 60s: 0 success, 0 failure, 51 error; p95 "
    )
    assert len(lines) == 2


async def test_the_engine_counts_5xx_answers_and_the_recovery(
    aiohttp_server: AiohttpServer, activity: ActivityLog, clock: FakeClock
) -> None:
    statuses = iter([503, 200, 503, 200])

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({}, status=next(statuses, 200))

    app = web.Application()
    app.router.add_get("/x", answer)
    server = await aiohttp_server(app)
    async with pipeline_at(str(server.make_url("")), activity) as pipeline:
        for _ in range(4):
            await pipeline.process(b"{}", SOURCE)
        clock.now += 60
        assert messages(activity.report())[:1] == [
            "partner api failing: 2 of 4 requests failed in the last 60s (HTTP 503)"
        ]
        await pipeline.process(b"{}", SOURCE)
        clock.now += 60
        lines = messages(activity.report())
    assert lines[0] == "partner api answering again: 1 requests in the last 60s, none failed"
    assert lines[1].startswith("flow test-flow: 1 leads in the last 60s: 1 success, 0 failure, 0 error; p95 ")


def test_the_engine_without_an_activity_log_counts_nothing() -> None:
    flow = make_flow("http://127.0.0.1:1", [{"name": "call", "request": {"url": "/x"}}])
    runner = FlowRunner(flow, HttpClient())
    assert runner.activity is None and runner.services.activity is None
    assert isinstance(FlowRunner(flow, HttpClient(), activity=ActivityLog()).activity, FlowActivity)
