"""Helpers of the notify tests (tests/test_step_notify.py, test_notifications.py,
test_notification_delivery.py, test_notify_in_flows.py): a flow with `notify:` steps written
as YAML text, its runner queueing (the worker) or sending inline (try/test), its pipeline,
and the notifications delivery, each over a real HttpClient with metrics in a fresh registry.
Partners are real local aiohttp servers (resilience_helpers.partner)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from prometheus_client import CollectorRegistry

import schemas
from streams.events import Source
from streams.flow import Flow
from streams.http_client import HttpClient
from streams.loader import parse_flow
from streams.metrics import Metrics
from streams.notification_delivery import NotificationDelivery
from streams.outcomes import FlowResult
from streams.pipeline import LeadPipeline, Output
from streams.runner import FlowRunner

FLOW = "notify-flow"
QUEUE = "leads.notify"
# A setting that must never sit on a topic; `/`, `+` and `&` make it look different URL-encoded.
HOOK_TOKEN = "hook/t0ken+s3cret&x"
INPUT = Source("leads.in", 2, 41)  # where the lead came from
RECORD_AT = Source(QUEUE, 1, 7)  # where the notification record sits on the queue
LEAD: dict[str, Any] = {"id": "L-7", "email": "ann@example.com", "state": "CA"}
# Records and attempts events (schemas/notification.schema.json), and the lead's event.
NOTIFICATION_SCHEMA = Draft202012Validator(schemas.load("notification"))
EVENT_SCHEMA = Draft202012Validator(schemas.load("event"))

HEAD = """\
version: 1
name: notify-flow
topics:
  input: leads.in
  enriched: leads.out
  errors: leads.errors
  notifications: leads.notify
  retry: leads.retry
settings:
  hook_token: "HOOK_TOKEN"
delayed_retry: {first: 1s, factor: 2, cap: 4s, attempts: 3}
integrations:
  api:
    base_url: API_URL
    allow_loopback: true
    retry: {backoff: 1ms, max_backoff: 2ms}
  crm:
    base_url: CRM_URL
    allow_loopback: true
    retry: {backoff: 1ms, max_backoff: 2ms}
steps:
"""

# `score` maps onto the lead and stores a var; the webhook is told of both (as they were when
# it ran), with the settings' token in its URL's query.
SCORE = """\
  - name: score
    integration: api
    request: {method: POST, url: /score, json: {email: "{{ lead.email }}"}}
    map: {score: "{{ response.score }}"}
    store: {tier: "{{ response.tier }}"}
"""
WEBHOOK = """\
  - name: crm_webhook
    integration: crm
    notify: NOTIFY
    request:
      method: POST
      url: /hooks/lead
      query: {token: "{{ settings.hook_token }}"}
      json:
        lead_id: "{{ lead.id }}"
        email: "{{ lead.email }}"
        score: "{{ lead.score }}"
        tier: "{{ vars.tier }}"
        scored: "{{ steps.score.outcome }}"
        at: "{{ now.isoformat() }}"
    response:
      outcome:
        - when: "{{ response.received is defined and not response.received }}"
          outcome: failure
          reason: CRM did not take the lead
"""
# After the webhook: changes the lead the webhook's snapshot must not see.
RESCORE = """\
  - name: rescore
    integration: api
    request: {method: POST, url: /rescore}
    map: {score: "{{ response.score }}", email: changed@example.com}
    store: {tier: "{{ response.tier }}"}
"""


def flow_text(*steps: str, api: str = "http://127.0.0.1:9", crm: str = "http://127.0.0.1:9",
              notify: str = "{important: true}", head: str = HEAD) -> str:  # fmt: skip
    text = head + "".join(steps)
    for name, value in (("API_URL", api), ("CRM_URL", crm), ("HOOK_TOKEN", HOOK_TOKEN), ("NOTIFY", notify)):
        text = text.replace(name, value)
    return text


def notify_flow(*steps: str, **options: str) -> Flow:
    return parse_flow(flow_text(*steps, **options), "notify.yaml", {})


@dataclass
class Engine:
    """A flow's runner, pipeline and notification delivery sharing one client and registry."""

    flow: Flow
    runner: FlowRunner
    pipeline: LeadPipeline
    delivery: NotificationDelivery
    metrics: Metrics

    async def run(self, lead: dict[str, Any] | None = None) -> FlowResult:
        lead = LEAD if lead is None else lead
        return await self.runner.run(lead, str(lead["id"]))

    async def process(self, lead: dict[str, Any] | None = None) -> Output:
        return await self.pipeline.process(orjson.dumps(LEAD if lead is None else lead), INPUT)

    def sample(self, name: str, **labels: str) -> float:
        """A metric sample of this flow (0.0 when never set)."""
        value = self.metrics.registry.get_sample_value(name, {"flow": FLOW, **labels})
        return 0.0 if value is None else value


@asynccontextmanager
async def engine(flow: Flow, *, queue: bool = True, **runner_options: Any) -> AsyncIterator[Engine]:
    """``queue``: notify steps queued with the lead (a worker), else sent inline (try, test)."""
    client = HttpClient()
    metrics = Metrics(CollectorRegistry())
    try:
        runner = FlowRunner(flow, client, metrics, queue_notifications=queue, **runner_options)
        delivery = NotificationDelivery(flow, QUEUE, runner.services, metrics)
        yield Engine(flow, runner, LeadPipeline(runner, metrics), delivery, metrics)
    finally:
        await client.close()


def records_of(output: Output) -> list[dict[str, Any]]:
    """The notification records written alongside a lead's output (schema-valid)."""
    records = [orjson.loads(record.value) for record in output.alongside]
    for record in records:
        NOTIFICATION_SCHEMA.validate(record)
    return records


def webhook(extra: str = "", notify: str = "NOTIFY") -> str:
    """WEBHOOK with ``extra`` lines (indented 4) after its ``notify:`` line."""
    return WEBHOOK.replace("    notify: NOTIFY\n", f"    notify: {notify}\n{extra}")
