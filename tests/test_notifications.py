"""The notification record (streams/notifications.py): written alongside the lead's output by
LeadPipeline.process, read back and turned into the rendering context at delivery."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, quote_plus

import orjson
import pytest
from aiohttp import web
from helpers import recording_app, serve
from notify_helpers import (
    EVENT_SCHEMA,
    FLOW,
    HOOK_TOKEN,
    INPUT,
    LEAD,
    QUEUE,
    SCORE,
    WEBHOOK,
    engine,
    notify_flow,
    records_of,
    webhook,
)
from pytest_aiohttp import AiohttpServer
from yarl import URL

from streams.delayed import RetryState
from streams.events import Source
from streams.notifications import NotRecord, notification_record, read_record, render_context
from streams.pipeline import Destination
from streams.step.notify import QueuedNotification

ALERT = """\
  - name: alert
    integration: crm
    notify: true
    request: {method: PUT, url: /alert, json: {id: "{{ lead.id }}"}}
"""


async def scored(request: web.Request) -> web.StreamResponse:
    return web.json_response({"score": 7, "tier": "gold"})


async def scored_down(request: web.Request) -> web.StreamResponse:
    return web.json_response({"message": "maintenance"}, status=503)


async def test_the_leads_output_carries_its_notification_records(aiohttp_server: AiohttpServer) -> None:
    app, _ = recording_app(scored)
    flow = notify_flow(SCORE, WEBHOOK, ALERT, api=await serve(aiohttp_server, app))
    async with engine(flow) as e:
        before = time.time()
        output = await e.process()
        queued = e.sample("leadstreams_notifications_total", step="crm_webhook", result="queued")
        assert queued == e.sample("leadstreams_notifications_total", step="alert", result="queued") == 1
    assert output.destination is Destination.ENRICHED
    event = orjson.loads(output.value)
    EVENT_SCHEMA.validate(event)
    assert [s.get("notification") for s in event["steps"]] == [None, "queued", "queued"]
    assert [(o.destination, o.topic, o.key, o.outcome) for o in output.alongside] == [
        (Destination.NOTIFY, QUEUE, b"L-7", "queued")
    ] * 2
    hook, alert = records_of(output)  # in step order
    assert set(hook) == {"flow", "flow_version", "step", "lead_id", "important", "idempotency_key", "request",
                         "context", "input", "queued_at"}  # fmt: skip
    assert (hook["flow"], hook["step"], hook["lead_id"], hook["important"]) == (
        FLOW,
        "crm_webhook",
        "L-7",
        True,
    )
    assert (alert["step"], alert["important"], alert["request"]["method"]) == ("alert", False, "PUT")
    assert hook["idempotency_key"] == "L-7:crm_webhook" and alert["idempotency_key"] == "L-7:alert"
    assert hook["request"] == {
        "method": "POST",
        "url": f"{flow.integrations['crm'].base_url}/hooks/lead?token=***",
    }
    assert hook["context"]["lead"] == {**LEAD, "score": 7} and hook["context"]["vars"] == {"tier": "gold"}
    assert hook["context"]["steps"]["score"]["outcome"] == "success"
    assert set(hook["context"]) == {"lead", "vars", "steps", "now"}
    assert hook["input"] == alert["input"] == INPUT.as_event()
    queued_at = datetime.fromisoformat(hook["queued_at"])
    assert before - 1 <= queued_at.timestamp() <= time.time() + 1


async def test_the_settings_secret_in_the_url_is_nowhere_in_the_record() -> None:
    async with engine(notify_flow(WEBHOOK)) as e:
        [queued] = (await e.run()).notifications
        output = await e.process()
    # The request as rendered did carry it (yarl's query encoding): the record must not.
    assert URL(queued.url).query["token"] == HOOK_TOKEN
    [record] = output.alongside
    spellings = {HOOK_TOKEN, quote(HOOK_TOKEN, safe=""), quote_plus(HOOK_TOKEN, safe=""),
                 URL(queued.url).raw_query_string.removeprefix("token="), "t0ken", "s3cret"}  # fmt: skip
    for spelling in spellings:
        assert spelling.encode() not in record.value, spelling
    assert orjson.loads(record.value)["request"]["url"].endswith("/hooks/lead?token=***")


async def test_a_lead_id_holding_a_secret_is_masked_in_the_records_key() -> None:
    async with engine(notify_flow(WEBHOOK)) as e:
        output = await e.process({**LEAD, "id": f"id-{HOOK_TOKEN}"})
    assert output.key == b"id-***" and [o.key for o in output.alongside] == [b"id-***"]


async def test_a_notification_that_could_not_be_queued_writes_no_record() -> None:
    broken = webhook("    strict: true\n").replace('"{{ lead.email }}"', '"{{ lead.nope }}"')
    async with engine(notify_flow(broken)) as e:
        output = await e.process()
        assert e.sample("leadstreams_notifications_total", step="crm_webhook", result="queued") == 0
    assert output.destination is Destination.ENRICHED and output.alongside == ()
    [step] = orjson.loads(output.value)["steps"]
    assert (step["outcome"], step["notification"]) == ("error", "not queued")


async def test_a_deferred_lead_queues_nothing_until_its_final_run(aiohttp_server: AiohttpServer) -> None:
    """The webhook runs before `score`, whose partner is down: the lead goes to a delayed-retry
    tier without its notification; on the last tier it is final, and written with it."""
    app, _ = recording_app(scored_down)
    flow = notify_flow(WEBHOOK, SCORE, api=await serve(aiohttp_server, app))
    async with engine(flow) as e:
        deferred = await e.process()
        assert e.sample("leadstreams_notifications_total", step="crm_webhook", result="queued") == 0
        last = RetryState(attempt=3, origin=INPUT, due=0.0)  # delayed_retry attempts: 3
        final = await e.pipeline.process(orjson.dumps(LEAD), Source("leads.retry.4s", 0, 5), last)
        assert e.sample("leadstreams_notifications_total", step="crm_webhook", result="queued") == 1
    assert (deferred.destination, deferred.topic, deferred.alongside) == (
        Destination.RETRY,
        "leads.retry.1s",
        (),
    )
    assert final.destination is Destination.ERRORS
    [record] = records_of(final)
    assert record["step"] == "crm_webhook" and record["input"] == INPUT.as_event()  # where it first came


# --- read_record, render_context ------------------------------------------------------------------

NOW = datetime(2026, 12, 1, 10, 30, 15, 123456, tzinfo=UTC)


def a_record(**context: Any) -> bytes:
    snapshot = {"lead": {"id": "L-1", "n": 1.5}, "vars": {"tier": "gold"},
                "steps": {"s": {"outcome": "success"}}, "now": NOW, **context}  # fmt: skip
    queued = QueuedNotification(
        "hook", True, "L-1:hook", "POST", "http://crm/hook?k=***", orjson.dumps(snapshot)
    )
    return notification_record("f", "L-1", queued, Source("in", 0, 3), "http://crm/hook?k=***")


def test_a_record_reads_back_into_the_context_its_step_saw() -> None:
    record = read_record(a_record())
    assert (record["flow"], record["step"], record["lead_id"], record["important"]) == (
        "f",
        "hook",
        "L-1",
        True,
    )
    assert record["idempotency_key"] == "L-1:hook" and record["input"] == {
        "topic": "in",
        "partition": 0,
        "offset": 3,
    }
    context = render_context(record, {"key": "from-the-worker"}, "f")
    assert context == {
        "lead": {"id": "L-1", "n": 1.5},
        "vars": {"tier": "gold"},
        "steps": {"s": {"outcome": "success"}},
        "settings": {"key": "from-the-worker"},  # today's settings, not the record's
        "flow": {"name": "f"},
        "now": NOW,  # a datetime again, the same instant
    }
    assert isinstance(context["now"], datetime) and context["now"].tzinfo is not None


def test_a_record_without_now_renders_with_the_current_time() -> None:
    raw = orjson.loads(a_record())
    del raw["context"]["now"], raw["context"]["vars"]
    context = render_context(read_record(orjson.dumps(raw)), {}, "f")
    assert context["vars"] == {} and abs(context["now"] - datetime.now(UTC)) < timedelta(seconds=5)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"{not json", "not JSON"),
        (None, "not JSON"),
        (b"", "not JSON"),
        (b"[1, 2]", "not a notification record"),
        (b'"text"', "not a notification record"),
        (b'{"step": "hook"}', "missing lead_id, context"),
        (b'{"lead_id": "L", "context": {}}', "missing step"),
        (b'{"step": "hook", "lead_id": "L", "context": [1]}', "not a notification record"),
    ],
)
def test_what_is_not_a_record_is_refused_with_why(raw: bytes | None, says: str) -> None:
    with pytest.raises(NotRecord, match=says):
        read_record(raw)
