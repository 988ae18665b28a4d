"""`notify:` steps in whole flows: queued by a worker's runner (FlowRunner(queue_notifications=
True)), sent inline without one (try, test, run_lead); either way a notify step never changes
the lead's outcome nor stops the steps after it. Partners are real local aiohttp servers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from helpers import Received, recording_app, serve
from notify_helpers import HOOK_TOKEN, LEAD, RECORD_AT, RESCORE, SCORE, WEBHOOK, engine, notify_flow, webhook
from pytest_aiohttp import AiohttpServer
from resilience_helpers import Answer, answer, partner

from streams.library import run_lead
from streams.outcomes import FlowResult, Outcome
from streams.pipeline import Destination
from streams.step.notify import NOT_QUEUED, QUEUED, SENT

ALERT = """\
  - name: alert
    integration: crm
    notify: true
    request: {method: POST, url: /alert, json: {id: "{{ lead.id }}", score: "{{ steps.score.outcome }}"}}
"""
# A notify step whose request cannot render: its own error, nothing else.
BROKEN = ALERT.replace("name: alert", "name: broken").replace(
    "notify: true", "notify: true\n    strict: true"
)
BROKEN = BROKEN.replace("{{ lead.id }}", "{{ lead.nope }}")
TAKEN = Answer(payload={"received": True})


async def api_answers(request: web.Request) -> web.StreamResponse:
    """/score: 7 (or 422 for a lead without email); /rescore and /check: fine."""
    if request.path == "/score":
        if not orjson.loads(await request.read()).get("email"):
            return web.json_response({"message": "invalid email"}, status=422)
        return web.json_response({"score": 7, "tier": "gold"})
    return web.json_response({"score": 1, "tier": "tin"})


async def api(aiohttp_server: AiohttpServer) -> tuple[str, list[Received]]:
    app, received = recording_app(api_answers)
    return await serve(aiohttp_server, app), received


def outcomes(result: FlowResult) -> list[tuple[str, str, str | None]]:
    return [(s.name, s.outcome.value, s.notification) for s in result.steps]


# --- queued (a worker) ---------------------------------------------------------------------------


async def test_queued_notify_steps_never_change_the_outcome_nor_stop_later_steps(
    aiohttp_server: AiohttpServer,
) -> None:
    url, got = await api(aiohttp_server)
    async with engine(notify_flow(WEBHOOK, SCORE, BROKEN, ALERT, RESCORE, api=url)) as e:
        result = await e.run()
        errors = e.sample("leadstreams_step_outcomes_total", step="broken", outcome="error")
        timed = e.sample("leadstreams_request_duration_seconds_count", step="crm_webhook",
                         integration="crm", outcome="success")  # fmt: skip
    assert (result.outcome, result.reason) == (Outcome.SUCCESS, None)
    assert outcomes(result) == [("crm_webhook", "success", QUEUED), ("score", "success", None),
                                ("broken", "error", NOT_QUEUED), ("alert", "success", QUEUED),
                                ("rescore", "success", None)]  # fmt: skip
    assert [r.path for r in got] == ["/score", "/rescore"]  # the broken notification stopped nothing
    assert [n.step for n in result.notifications] == ["crm_webhook", "alert"]  # in step order
    assert result.lead["score"] == 1
    assert (errors, timed) == (1, 0)  # counted as a step; no request was timed: none was sent


async def test_notify_steps_run_after_a_stop_and_their_when_decides(aiohttp_server: AiohttpServer) -> None:
    url, got = await api(aiohttp_server)
    sold = webhook("    when: \"{{ steps.score.outcome == 'success' }}\"\n")
    alert = ALERT.replace(
        "    notify: true\n", "    notify: true\n    when: \"{{ steps.score.outcome != 'success' }}\"\n"
    )
    async with engine(notify_flow(SCORE, sold, alert, RESCORE, api=url)) as e:
        result = await e.run({"id": "L-8"})  # no email: score answers 422
    assert (result.outcome, result.reason) == (Outcome.ERROR, "score: HTTP 422: invalid email")
    assert outcomes(result) == [("score", "error", None), ("crm_webhook", "skip", None),
                                ("alert", "success", QUEUED), ("rescore", "skip", None)]  # fmt: skip
    assert result.steps[3].reason == "not run: score ended error"
    assert [r.path for r in got] == ["/score"]
    [queued] = result.notifications
    assert orjson.loads(queued.context)["steps"]["score"]["outcome"] == "error"


PARALLEL = """\
  - name: group
    parallel:
      - name: check
        integration: api
        request: {url: /check}
      - name: alert
        integration: crm
        notify: true
        request: {method: POST, url: /alert, json: {id: "{{ lead.id }}"}}
      - name: audit
        integration: crm
        notify: true
        request: {method: POST, url: /audit, json: {id: "{{ lead.id }}"}}
"""


@pytest.mark.parametrize(
    ("lead", "check"), [(LEAD, "success"), ({"id": "L-8"}, "skip")], ids=["ran", "stopped"]
)
async def test_notify_steps_of_a_parallel_group_keep_their_order(
    aiohttp_server: AiohttpServer, lead: dict[str, Any], check: str
) -> None:
    """After a stop, the group's notify steps run and its other steps show as not run."""
    url, got = await api(aiohttp_server)
    async with engine(notify_flow(SCORE, PARALLEL, api=url)) as e:
        result = await e.run(lead)
    assert [(s.name, s.outcome.value) for s in result.steps[1:]] == [
        ("check", check), ("alert", "success"), ("audit", "success")]  # fmt: skip
    assert [n.step for n in result.notifications] == ["alert", "audit"]
    assert ("/check" in [r.path for r in got]) is (check == "success")


# --- sent inline (try, test, run_lead) ------------------------------------------------------------


async def test_without_a_worker_a_notify_step_is_sent_inline(aiohttp_server: AiohttpServer) -> None:
    url, _ = await api(aiohttp_server)
    crm = await partner(aiohttp_server, TAKEN)
    async with engine(notify_flow(SCORE, WEBHOOK, RESCORE, api=url, crm=crm.url), queue=False) as e:
        result = await e.run()
        timed = e.sample("leadstreams_request_duration_seconds_count", step="crm_webhook",
                         integration="crm", outcome="success")  # fmt: skip
    assert outcomes(result) == [("score", "success", None), ("crm_webhook", "success", SENT),
                                ("rescore", "success", None)]  # fmt: skip
    assert result.steps[1].http_status == 200 and result.steps[1].as_event()["notification"] == "sent"
    assert result.notifications == [] and timed == 1
    [got] = crm.received
    body = orjson.loads(got.body)
    assert (body["score"], body["tier"], body["scored"]) == (7, "gold", "success")  # the lead as it was then
    assert got.headers["Idempotency-Key"] == "L-7:crm_webhook"


@pytest.mark.parametrize(
    ("reply", "step_outcome", "requests"),
    [
        (answer(503, {"message": "maintenance"}), "error", 1),  # the flow has delayed_retry: no deferral
        (answer(500), "error", 3),
        (answer(400, {"message": "bad lead"}), "error", 1),
        (Answer(payload={"received": False}), "failure", 1),
    ],
    ids=["503", "500", "400", "outcome rule"],
)
async def test_an_inline_notify_failure_does_not_change_the_lead(
    aiohttp_server: AiohttpServer, reply: Answer, step_outcome: str, requests: int
) -> None:
    url, got = await api(aiohttp_server)
    crm = await partner(aiohttp_server, reply)
    async with engine(notify_flow(WEBHOOK, SCORE, RESCORE, api=url, crm=crm.url), queue=False) as e:
        result = await e.run()
        output = await e.process()  # the same through the pipeline: enriched, not deferred
    assert (result.outcome, result.reason, result.defer_after) == (Outcome.SUCCESS, None, None)
    assert outcomes(result)[0] == ("crm_webhook", step_outcome, SENT)
    assert result.steps[0].attempts == requests and crm.requests == 2 * requests
    assert [r.path for r in got] == ["/score", "/rescore"] * 2
    assert (output.destination, output.alongside) == (Destination.ENRICHED, ())
    event = orjson.loads(output.value)
    assert event["outcome"] == "success" and event["steps"][0]["notification"] == "sent"


async def test_run_lead_sends_a_notify_step_inline(aiohttp_server: AiohttpServer) -> None:
    crm = await partner(aiohttp_server, answer(503))
    result = await run_lead(notify_flow(WEBHOOK, crm=crm.url), dict(LEAD))
    assert outcomes(result) == [("crm_webhook", "error", SENT)]
    assert result.outcome is Outcome.SUCCESS and result.notifications == [] and crm.requests == 1


# --- what the record holds renders as the lead's run did --------------------------------------

ECHO = """\
  - name: check
    integration: api
    request: {url: /check, query: {token: "{{ settings.hook_token }}"}}
    map: {echoed: "{{ response.echo }}"}
    store: {token: "{{ settings.hook_token }}"}
"""
STAMP = """\
  - name: stamp
    integration: api
    request: {url: /stamp}
    store: {sold_at: "{{ now }}"}
"""
DATED_HOOK = """\
  - name: crm_webhook
    integration: crm
    notify: true
    request:
      method: POST
      url: /hook
      json: {year: "{{ vars.sold_at.year }}", day: "{{ vars.sold_at.strftime('%Y-%m-%d') }}"}
"""


async def partner_of(handler: Any) -> tuple[TestServer, str]:
    server = TestServer(web.Application())
    server.app.router.add_route("*", "/{tail:.*}", handler)
    await server.start_server()
    return server, str(server.make_url("")).rstrip("/")


async def test_a_setting_echoed_into_the_lead_vars_or_a_reason_is_masked_in_the_record() -> None:
    async def echo(request: web.Request) -> web.Response:
        token = request.query.get("token", "")
        return web.json_response({"echo": token, "reason": f"token {token} is revoked"})

    server, url = await partner_of(echo)
    try:
        async with engine(notify_flow(ECHO, WEBHOOK, api=url)) as e:
            output = await e.process()
    finally:
        await server.close()
    [record] = output.alongside
    context = orjson.loads(record.value)["context"]
    assert HOOK_TOKEN.encode() not in record.value
    assert (context["lead"]["echoed"], context["vars"]["token"]) == ("***", "***")


async def test_a_stored_date_renders_the_same_at_delivery_as_inline() -> None:
    bodies: list[bytes] = []

    async def answer(request: web.Request) -> web.Response:
        if request.path == "/hook":
            bodies.append(await request.read())
        return web.json_response({"ok": True})

    server, url = await partner_of(answer)
    try:
        flow = notify_flow(STAMP, DATED_HOOK, api=url, crm=url)
        async with engine(flow, queue=False) as e:
            assert (await e.run()).steps[1].outcome is Outcome.SUCCESS
        async with engine(flow) as e:
            output = await e.process()
            event = orjson.loads((await e.delivery.deliver(output.alongside[0].value, RECORD_AT)).value)
    finally:
        await server.close()
    assert event["result"] == "delivered", event
    assert len(bodies) == 2 and bodies[0] == bodies[1]
    assert orjson.loads(bodies[0])["year"] == datetime.now(UTC).year


async def test_a_lead_id_that_makes_the_record_too_large_is_refused_on_the_lead() -> None:
    async with engine(notify_flow(WEBHOOK), max_notification_bytes=20_000) as e:
        lead = {**LEAD, "id": "i" * 8000}  # the id is in the record three times, and its key
        result = await e.runner.run(lead, lead["id"])
    assert result.notifications == []
    assert (result.steps[0].outcome, result.steps[0].notification) == (Outcome.ERROR, NOT_QUEUED)
