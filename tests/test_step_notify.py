"""A `notify:` step as a worker runs it (streams/step/notify.py): not sent but queued, with a
snapshot of what its request is rendered from; and how the loader reads and refuses it."""

from __future__ import annotations

from datetime import datetime

import orjson
import pytest
from aiohttp import web
from helpers import recording_app, serve
from notify_helpers import (
    HEAD,
    HOOK_TOKEN,
    LEAD,
    RESCORE,
    SCORE,
    WEBHOOK,
    engine,
    flow_text,
    notify_flow,
    webhook,
)
from pytest_aiohttp import AiohttpServer
from yarl import URL

from streams.events import Source
from streams.flow import NotifySpec
from streams.loader import parse_flow
from streams.notifications import notification_record
from streams.outcomes import Outcome
from streams.problems import FlowFileError, Problem
from streams.step.notify import NOT_QUEUED, QUEUED, SENT


async def scores(request: web.Request) -> web.StreamResponse:
    """/score: 7 and gold; /rescore: 1 and tin (after the webhook)."""
    if request.path == "/score":
        return web.json_response({"score": 7, "tier": "gold"})
    return web.json_response({"score": 1, "tier": "tin"})


async def test_a_notify_step_is_queued_not_sent_with_a_snapshot_taken_when_it_ran(
    aiohttp_server: AiohttpServer,
) -> None:
    api_app, api_got = recording_app(scores)
    crm_app, crm_got = recording_app(scores)
    flow = notify_flow(SCORE, WEBHOOK, RESCORE, api=await serve(aiohttp_server, api_app),
                       crm=await serve(aiohttp_server, crm_app))  # fmt: skip
    async with engine(flow) as e:
        result = await e.run()
    assert [r.path for r in api_got] == ["/score", "/rescore"] and crm_got == []  # queued, not sent
    assert result.outcome is Outcome.SUCCESS
    hook = result.steps[1]
    assert (hook.name, hook.outcome, hook.reason, hook.notification) == (
        "crm_webhook", Outcome.SUCCESS, "queued for delivery", QUEUED)  # fmt: skip
    assert hook.as_event()["notification"] == "queued" and hook.http_status is None
    [queued] = result.notifications
    assert (queued.step, queued.important, queued.method) == ("crm_webhook", True, "POST")
    assert queued.url.startswith(flow.integrations["crm"].base_url + "/hooks/lead?token=")
    snapshot = orjson.loads(queued.context)
    assert set(snapshot) == {"lead", "vars", "steps", "now"}  # no settings: no secret
    # As the webhook saw them: rescore (after it) changed the lead and vars since.
    assert snapshot["lead"] == {**LEAD, "score": 7}
    assert snapshot["vars"] == {"tier": "gold"}
    assert snapshot["steps"]["score"]["outcome"] == "success" and set(snapshot["steps"]) == {"score"}
    assert isinstance(datetime.fromisoformat(snapshot["now"]), datetime)
    assert (result.lead["score"], result.lead["email"], result.vars["tier"]) == (
        1,
        "changed@example.com",
        "tin",
    )
    assert HOOK_TOKEN.encode() not in queued.context


async def test_the_queued_key_is_the_one_the_request_carries_when_sent(aiohttp_server: AiohttpServer) -> None:
    crm_app, crm_got = recording_app(scores)
    flow = notify_flow(WEBHOOK, crm=await serve(aiohttp_server, crm_app))
    async with engine(flow) as e:
        [queued] = (await e.run()).notifications
    async with engine(flow, queue=False) as e:  # try/test: sent inline
        sent = await e.run()
    assert sent.steps[0].notification == SENT
    [request] = crm_got
    assert queued.idempotency_key == request.headers["Idempotency-Key"] == f"{LEAD['id']}:crm_webhook"
    assert request.query["token"] == HOOK_TOKEN and URL(queued.url).query["token"] == HOOK_TOKEN
    assert URL(queued.url).path == request.path == "/hooks/lead"


async def test_a_false_condition_skips_and_queues_nothing() -> None:
    flow = notify_flow(webhook("    when: \"{{ lead.state == 'NY' }}\"\n"))
    async with engine(flow) as e:
        result = await e.run()
    [step] = result.steps
    assert (step.outcome, step.reason, step.notification) == (Outcome.SKIP, "condition (when) is false", None)
    assert result.notifications == []


async def test_a_template_error_is_the_steps_error_and_queues_nothing() -> None:
    broken = webhook("    strict: true\n").replace('"{{ lead.email }}"', '"{{ lead.nope }}"')
    async with engine(notify_flow(broken)) as e:
        result = await e.run()
    [step] = result.steps
    assert (step.outcome, step.notification) == (Outcome.ERROR, NOT_QUEUED)
    assert "template error" in (step.reason or "") and "nope" in (step.reason or "")
    assert step.as_event()["notification"] == "not queued"
    assert result.notifications == []


@pytest.mark.parametrize(("pad", "queued"), [(100, True), (3000, False)])
async def test_a_notification_larger_than_allowed_is_refused_on_the_lead(pad: int, queued: bool) -> None:
    async with engine(notify_flow(WEBHOOK), max_notification_bytes=2000) as e:
        result = await e.run({**LEAD, "note": "n" * pad})
    [step] = result.steps
    assert bool(result.notifications) is queued
    if queued:
        assert (step.outcome, step.notification) == (Outcome.SUCCESS, QUEUED)
        record = notification_record("f", "L-7", result.notifications[0], Source("in", 0, 1), "u")
        assert len(record) <= 2000
    else:
        assert (step.outcome, step.notification) == (Outcome.ERROR, NOT_QUEUED)
        assert (step.reason or "").startswith("notification of ")
        assert (step.reason or "").endswith("bytes is larger than the 2000 bytes allowed")


# --- the loader ---------------------------------------------------------------------------------

NOTIFY_STEP = """\
  - name: hook
    integration: crm
    notify: true
    request: {method: POST, url: /hook, json: {id: "{{ lead.id }}"}}
"""
CONFLICTS: dict[str, tuple[str, str]] = {
    "map": ('map: {x: "{{ response.x }}"}', "cannot map fields onto the lead"),
    "store": ('store: {x: "{{ response.x }}"}', "cannot store variables for later steps"),
    "price": ('price: "{{ response.price }}"', "cannot price the lead"),
    "reference": ('reference: "{{ response.ref }}"', "cannot set the lead's reference"),
    "fallback": ("fallback: [{default: {x: 1}}]", "has no fallback chain"),
    "batch": ("batch: {max_leads: 5, window: 1s}", "cannot be a batch step"),
    "continue_on": ("continue_on: [failure]", "never stops the flow"),
}


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(FlowFileError) as caught:
        parse_flow(text, "flow.yaml", {})
    return caught.value.problems


@pytest.mark.parametrize("key", CONFLICTS)
def test_a_notify_step_cannot_have_what_needs_its_answer(key: str) -> None:
    line, why = CONFLICTS[key]
    text = flow_text(NOTIFY_STEP + f"    {line}\n")
    problems = [p for p in problems_of(text) if p.path == f"steps.0.{key}"]
    assert len(problems) == 1, problems_of(text)
    [problem] = problems
    assert problem.message.startswith("a notify step's answer comes after the lead's event is written: it ")
    assert why in problem.message
    assert problem.line == HEAD.count("\n") + 5  # the key's own line, after the step's 4


def test_an_empty_notify_mapping_is_a_notify_step_and_checked_as_one() -> None:
    text = flow_text(NOTIFY_STEP.replace("notify: true", "notify: {}") + "    map: {x: y}\n")
    assert [p.path for p in problems_of(text)] == ["steps.0.map"]


@pytest.mark.parametrize("key", ["map", "store", "price", "reference", "continue_on"])
def test_the_same_keys_are_fine_without_notify(key: str) -> None:
    line, _ = CONFLICTS[key]
    text = flow_text(NOTIFY_STEP.replace("notify: true", "notify: false") + f"    {line}\n")
    assert parse_flow(text, "flow.yaml", {}).steps[0].notify is None


def test_a_worker_flow_with_notify_steps_needs_topics_notifications() -> None:
    text = flow_text(NOTIFY_STEP, head=HEAD.replace("  notifications: leads.notify\n", ""))
    [problem] = problems_of(text)
    assert problem.path == "topics" and "topics.notifications" in problem.message
    # Without notify steps, or without topics (try/test only), nothing is missing.
    without_queue = HEAD.replace("  notifications: leads.notify\n", "")
    assert parse_flow(
        flow_text(NOTIFY_STEP.replace("notify: true", "notify: false"), head=without_queue), "f", {}
    )
    no_topics = HEAD.split("topics:")[0] + "settings:" + HEAD.split("settings:")[1]
    no_topics = no_topics.replace("delayed_retry: {first: 1s, factor: 2, cap: 4s, attempts: 3}\n", "")
    assert parse_flow(flow_text(NOTIFY_STEP, head=no_topics), "f", {}).topics is None


@pytest.mark.parametrize(
    ("written", "spec"),
    [
        ("true", NotifySpec(important=False)),
        ("{important: true}", NotifySpec(important=True)),
        ("{important: false}", NotifySpec(important=False)),
        ("{}", NotifySpec(important=False)),
        ("false", None),
    ],
)
def test_notify_is_read(written: str, spec: NotifySpec | None) -> None:
    flow = parse_flow(flow_text(NOTIFY_STEP.replace("notify: true", f"notify: {written}")), "f", {})
    assert flow.steps[0].notify == spec


@pytest.mark.parametrize("written", ["yes please", "{important: maybe}", "{urgent: true}", "[true]"])
def test_a_notify_that_is_neither_a_boolean_nor_important_is_refused(written: str) -> None:
    problems = problems_of(flow_text(NOTIFY_STEP.replace("notify: true", f"notify: {written}")))
    assert [p.path for p in problems if p.path.startswith("steps.0.notify")], problems
