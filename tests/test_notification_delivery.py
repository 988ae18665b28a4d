"""NotificationDelivery.deliver (streams/notification_delivery.py): one delivery round of a
queued record against a real local partner, its attempts event, and for an important
notification the partner could not take now, the record again on the next retry tier."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import orjson
import pytest
from notify_helpers import (
    FLOW,
    HEAD,
    HOOK_TOKEN,
    LEAD,
    NOTIFICATION_SCHEMA,
    QUEUE,
    RECORD_AT,
    SCORE,
    WEBHOOK,
    Engine,
    engine,
    notify_flow,
    webhook,
)
from pytest_aiohttp import AiohttpServer
from resilience_helpers import Answer, Partner, answer, closed_port_url, partner, stalled_partner

from streams.circuit import State
from streams.delayed import RetryState
from streams.events import Source
from streams.pipeline import Destination, Output

RESULTS = f"{QUEUE}.results"
TAKEN = Answer(payload={"received": True})
DOWN = answer(503, {"message": "maintenance"})


async def queued_record(e: Engine, lead: dict[str, Any] | None = None) -> bytes:
    """The record the lead's run wrote alongside its output."""
    [record] = (await e.process(lead)).alongside
    return record.value


def attempts_of(output: Output) -> dict[str, Any]:
    """The attempts event: on NAME.results, keyed by the lead id, its result as the outcome."""
    assert (output.destination, output.topic) == (Destination.NOTIFY, RESULTS)
    event: dict[str, Any] = orjson.loads(output.value)
    NOTIFICATION_SCHEMA.validate(event)
    assert output.outcome == event["result"]
    assert set(event) == {"flow", "step", "lead_id", "attempt", "result", "http_status", "requests",
                          "latency_ms", "reason", "notification", "at"}  # fmt: skip
    assert isinstance(event["latency_ms"], float | int) and event["latency_ms"] >= 0
    assert datetime.fromisoformat(event["at"])
    return event


async def deliver_once(
    aiohttp_server: AiohttpServer, *answers: Answer, notify: str = "{important: true}", steps: str = WEBHOOK
) -> tuple[Engine, Partner, bytes, Output]:
    crm = await partner(aiohttp_server, *answers)
    flow = notify_flow(steps, crm=crm.url, notify=notify)
    async with engine(flow) as e:
        raw = await queued_record(e)
        return e, crm, raw, await e.delivery.deliver(raw, RECORD_AT)


async def test_a_delivered_notification_is_the_request_the_lead_rendered(
    aiohttp_server: AiohttpServer,
) -> None:
    e, crm, raw, output = await deliver_once(aiohttp_server, TAKEN)
    event = attempts_of(output)
    assert output.key == b"L-7" and output.alongside == ()
    shown = ("flow", "step", "lead_id", "attempt", "result", "http_status", "requests")
    assert {k: event[k] for k in shown} == {
        "flow": FLOW, "step": "crm_webhook", "lead_id": "L-7", "attempt": 1, "result": "delivered",
        "http_status": 200, "requests": 1}  # fmt: skip
    assert event["notification"] == RECORD_AT.as_event() and event["reason"] is None
    [got] = crm.received
    record = orjson.loads(raw)
    assert got.headers["Idempotency-Key"] == record["idempotency_key"] == "L-7:crm_webhook"
    assert (got.method, got.path, got.query["token"]) == ("POST", "/hooks/lead", HOOK_TOKEN)  # settings again
    # The body the lead's step would have sent inline (try/test), at the instant it was queued.
    inline = await partner(aiohttp_server, TAKEN)
    async with engine(notify_flow(WEBHOOK, crm=inline.url), queue=False) as sent:
        await sent.run()
    [expected] = inline.received
    body, expected_body = orjson.loads(got.body), orjson.loads(expected.body)
    assert body.pop("at") == datetime.fromisoformat(record["context"]["now"]).isoformat()
    expected_body.pop("at")
    assert body == expected_body == {"lead_id": "L-7", "email": LEAD["email"], "score": None, "tier": None,
                                     "scored": None}  # fmt: skip
    assert got.headers["Idempotency-Key"] == expected.headers["Idempotency-Key"]
    labels = {"step": "crm_webhook", "result": "delivered"}
    assert e.sample("leadstreams_notifications_total", **labels) == 1
    assert e.sample("leadstreams_notification_duration_seconds_count", **labels) == 1


async def test_an_important_notification_the_partner_cannot_take_now_goes_through_the_tiers(
    aiohttp_server: AiohttpServer,
) -> None:
    crm = await partner(aiohttp_server, DOWN)
    async with engine(notify_flow(WEBHOOK, crm=crm.url)) as e:
        raw = await queued_record(e)
        states: list[RetryState] = []
        events: list[dict[str, Any]] = []
        retry: RetryState | None = None
        source = RECORD_AT
        for _ in range(3):  # delayed_retry: 1s, 2s, 4s
            started = time.time()
            output = await e.delivery.deliver(raw, source, retry)
            events.append(attempts_of(output))
            [again] = output.alongside
            assert (again.destination, again.key, again.value, again.outcome) == (
                Destination.NOTIFY, b"L-7", raw, "retrying")  # fmt: skip
            source = Source(str(again.topic), 0, len(states))
            retry = RetryState.from_headers(again.headers, Source("unused", 9, 9))
            assert started + 0.5 < retry.due < time.time() + 5
            states.append(retry)
        last = await e.delivery.deliver(raw, source, retry)
        assert e.sample("leadstreams_notifications_total", step="crm_webhook", result="retrying") == 3
        assert e.sample("leadstreams_notifications_total", step="crm_webhook", result="gave_up") == 1
        assert e.sample("leadstreams_notification_duration_seconds_count", step="crm_webhook",
                        result="gave_up") == 1  # fmt: skip
    assert [s.attempt for s in states] == [1, 2, 3]
    assert all(s.origin == RECORD_AT for s in states)  # the record's own coordinates, every time
    assert [s.reason for s in states] == ["retry later: HTTP 503"] * 3
    assert [(ev["attempt"], ev["result"], ev["http_status"], ev["requests"]) for ev in events] == [
        (1, "retrying", 503, 1), (2, "retrying", 503, 1), (3, "retrying", 503, 1)]  # fmt: skip
    assert all(ev["notification"] == RECORD_AT.as_event() for ev in events)
    assert all(ev["reason"] == "retry later: HTTP 503" for ev in events)
    ended = attempts_of(last)
    assert (ended["attempt"], ended["result"], ended["requests"], last.alongside) == (4, "gave_up", 1, ())
    assert ended["notification"] == RECORD_AT.as_event()
    assert crm.requests == 4 == sum(ev["requests"] for ev in [*events, ended])


async def test_the_tier_topics_follow_delayed_retry(aiohttp_server: AiohttpServer) -> None:
    e, _, raw, output = await deliver_once(aiohttp_server, DOWN)
    assert [o.topic for o in output.alongside] == [f"{QUEUE}.retry.1s"]
    async with engine(e.flow) as again:
        state = RetryState(attempt=2, origin=RECORD_AT, due=0.0)
        second = await again.delivery.deliver(raw, Source(f"{QUEUE}.retry.2s", 0, 0), state)
    assert [o.topic for o in second.alongside] == [f"{QUEUE}.retry.4s"]
    assert RetryState.from_headers(second.alongside[0].headers, RECORD_AT).attempt == 3


async def test_a_refused_connection_is_transient_for_an_important_notification() -> None:
    async with engine(notify_flow(WEBHOOK, crm=closed_port_url())) as e:
        output = await e.delivery.deliver(await queued_record(e), RECORD_AT)
    event = attempts_of(output)
    assert (event["result"], event["http_status"], event["requests"]) == ("retrying", None, 3)
    assert "connection refused" in event["reason"]
    assert [o.topic for o in output.alongside] == [f"{QUEUE}.retry.1s"]


async def test_a_retry_after_longer_than_the_tier_is_honoured(aiohttp_server: AiohttpServer) -> None:
    """429 with Retry-After: 30 (too long to wait inline): the 1s tier, not due before 30 s."""
    started = time.time()
    _, crm, _, output = await deliver_once(aiohttp_server, answer(429, Retry_After="30"))
    event = attempts_of(output)
    assert (event["result"], event["http_status"], event["requests"], crm.requests) == ("retrying", 429, 1, 1)
    [again] = output.alongside
    assert again.topic == f"{QUEUE}.retry.1s"
    assert RetryState.from_headers(again.headers, RECORD_AT).due >= started + 30


async def test_a_timeout_is_transient_for_an_important_notification(aiohttp_server: AiohttpServer) -> None:
    url, received = await stalled_partner(aiohttp_server)
    head = HEAD.replace("    base_url: CRM_URL\n", "    base_url: CRM_URL\n    timeout: 50ms\n")
    async with engine(notify_flow(WEBHOOK, crm=url, head=head)) as e:
        output = await e.delivery.deliver(await queued_record(e), RECORD_AT)
    event = attempts_of(output)
    assert (event["result"], event["http_status"], event["requests"]) == ("retrying", None, len(received))
    assert len(received) == 2 and "timeout" in event["reason"]  # timeout_attempts: 2
    assert [o.topic for o in output.alongside] == [f"{QUEUE}.retry.1s"]


CIRCUIT = "    circuit: {min_calls: 2, failure_rate: 0.5, open_for: 60s}\n"


@pytest.mark.parametrize(("notify", "result"), [("{important: true}", "retrying"), ("true", "failed")])
async def test_an_open_circuit_sends_nothing(aiohttp_server: AiohttpServer, notify: str, result: str) -> None:
    """The integration's circuit (the lead runner's own) opens on the notifications' 503s."""
    crm = await partner(aiohttp_server, DOWN)
    head = HEAD.replace("    base_url: CRM_URL\n", "    base_url: CRM_URL\n" + CIRCUIT)
    async with engine(notify_flow(WEBHOOK, crm=crm.url, notify=notify, head=head)) as e:
        raw = await queued_record(e)
        for _ in range(2):
            await e.delivery.deliver(raw, RECORD_AT)
        output = await e.delivery.deliver(raw, RECORD_AT)
        # The lead runner's own breaker (what a lead's step of crm goes through) is the one open.
        circuit = e.runner.protections.for_integration(e.flow.integrations["crm"]).circuit
    event = attempts_of(output)
    assert (event["result"], event["requests"], event["http_status"], crm.requests) == (result, 0, None, 2)
    assert "circuit open" in event["reason"]
    assert [o.topic for o in output.alongside] == ([f"{QUEUE}.retry.1s"] if result == "retrying" else [])
    assert circuit is not None and circuit.state is State.OPEN


async def test_a_retry_that_succeeds_inline_counts_every_request(aiohttp_server: AiohttpServer) -> None:
    _, crm, _, output = await deliver_once(aiohttp_server, answer(500), answer(502), TAKEN)
    event = attempts_of(output)
    assert (event["result"], event["http_status"], event["requests"], crm.requests) == (
        "delivered",
        200,
        3,
        3,
    )


@pytest.mark.parametrize(
    ("reply", "status", "reason"),
    [
        (answer(400, {"message": "bad lead"}), 400, "HTTP 400: bad lead"),
        (answer(422, {"message": "invalid email"}), 422, "HTTP 422: invalid email"),
        (Answer(payload={"received": False}), 200, "CRM did not take the lead"),  # its outcome rule
    ],
    ids=["400", "422", "outcome rule"],
)
async def test_a_partners_rejection_of_an_important_notification_is_final(
    aiohttp_server: AiohttpServer, reply: Answer, status: int, reason: str
) -> None:
    e, crm, _, output = await deliver_once(aiohttp_server, reply)
    event = attempts_of(output)
    assert (event["result"], event["http_status"], event["requests"], event["reason"]) == (
        "failed", status, 1, reason)  # fmt: skip
    assert output.alongside == () and crm.requests == 1
    assert e.sample("leadstreams_notifications_total", step="crm_webhook", result="failed") == 1
    assert e.sample("leadstreams_notifications_total", step="crm_webhook", result="retrying") == 0


@pytest.mark.parametrize(("replies", "requests"), [((DOWN,), 1), ((answer(500),), 3)], ids=["503", "500"])
async def test_a_notification_that_is_not_important_fails_after_its_inline_retries(
    aiohttp_server: AiohttpServer, replies: tuple[Answer, ...], requests: int
) -> None:
    e, crm, _, output = await deliver_once(aiohttp_server, *replies, notify="true")
    event = attempts_of(output)
    assert (event["result"], event["requests"], crm.requests) == ("failed", requests, requests)
    assert output.alongside == ()
    assert e.sample("leadstreams_notifications_total", step="crm_webhook", result="failed") == 1


async def test_a_condition_false_at_delivery_is_skipped(aiohttp_server: AiohttpServer) -> None:
    crm = await partner(aiohttp_server, TAKEN)
    async with engine(notify_flow(WEBHOOK, crm=crm.url)) as queueing:
        raw = await queued_record(queueing)
    # A worker whose flow now sends the webhook only for NY leads.
    later = notify_flow(webhook("    when: \"{{ lead.state == 'NY' }}\"\n"), crm=crm.url)
    async with engine(later) as e:
        event = attempts_of(await e.delivery.deliver(raw, RECORD_AT))
    assert (event["result"], event["requests"], crm.requests) == ("skipped", 0, 0)
    assert e.sample("leadstreams_notifications_total", step="crm_webhook", result="skipped") == 1


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON"),
        (None, "not JSON"),
        (b'{"step": "crm_webhook"}', "not a notification record (missing lead_id, context)"),
        (
            b'{"step": "nope", "lead_id": "L", "context": {}}',
            "step 'nope' is not a notify step of flow 'notify-flow'",
        ),
        (b'{"step": "score", "lead_id": "L", "context": {}}', "step 'score' is not a notify step"),
        (
            b'{"step": "crm_webhook", "lead_id": "L", "context": {"now": "noon"}}',
            "internal error: ValueError(",
        ),
    ],
    ids=["not json", "no value", "missing keys", "unknown step", "not a notify step", "a bug"],
)
async def test_what_cannot_be_delivered_fails_with_why_and_never_raises(
    aiohttp_server: AiohttpServer, raw: bytes | None, reason: str
) -> None:
    crm = await partner(aiohttp_server, TAKEN)
    async with engine(notify_flow(SCORE, WEBHOOK, crm=crm.url)) as e:
        output = await e.delivery.deliver(raw, RECORD_AT)
        assert e.sample("leadstreams_notifications_total", step=event_step(output), result="failed") == 1
    event = attempts_of(output)
    assert (event["result"], event["attempt"], event["requests"], event["http_status"]) == (
        "failed",
        1,
        0,
        None,
    )
    assert event["reason"].startswith(reason) and event["notification"] == RECORD_AT.as_event()
    assert output.alongside == () and crm.requests == 0


def event_step(output: Output) -> str:
    return str(orjson.loads(output.value)["step"] or "")


async def test_secrets_of_the_settings_are_masked_in_the_attempts_event(
    aiohttp_server: AiohttpServer,
) -> None:
    echo = answer(400, {"message": f"token {HOOK_TOKEN} is revoked"})
    _, crm, _, output = await deliver_once(aiohttp_server, echo)
    assert crm.received[0].query["token"] == HOOK_TOKEN  # it was sent, and echoed
    event = attempts_of(output)
    assert event["reason"] == "HTTP 400: token *** is revoked"
    assert HOOK_TOKEN.encode() not in output.value and b"s3cret" not in output.value


async def test_a_record_queued_important_gets_one_round_once_the_flow_dropped_important(
    aiohttp_server: AiohttpServer,
) -> None:
    """The flow changed to `notify: true` between queueing and delivery: it has no retry
    tiers any more (no agent reads them), so the record is not sent to one."""
    crm = await partner(aiohttp_server, DOWN)
    async with engine(notify_flow(WEBHOOK, crm=crm.url)) as queueing:  # important
        raw = await queued_record(queueing)
    assert orjson.loads(raw)["important"] is True
    async with engine(notify_flow(WEBHOOK, crm=crm.url, notify="true")) as e:
        output = await e.delivery.deliver(raw, RECORD_AT)
    assert (attempts_of(output)["result"], output.alongside) == ("failed", ())
