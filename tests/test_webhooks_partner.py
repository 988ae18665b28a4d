"""The webhooks partner stand-in (examples/partners/webhooks.py): what the broker test of
notifications counts on — every request counted as it arrives, under its Idempotency-Key and
lead id, a 503 or a slow answer included — and the answers the example flow's cases assume."""

from __future__ import annotations

import asyncio
import time

from pytest_aiohttp import AiohttpClient
from webhooks import (
    BUYER_TOKEN,
    CRM_SECRET,
    HOOKS,
    SLACK_TOKEN,
    VALIDATOR_KEY,
    create_webhooks_app,
)

from examples.support.process import wait_for

CRM_HEADERS = {"X-Webhook-Secret": CRM_SECRET}


async def test_crm_down_answers_503_and_still_counts_each_request(aiohttp_client: AiohttpClient) -> None:
    app = create_webhooks_app(crm_down=True)
    client = await aiohttp_client(app)
    headers = {**CRM_HEADERS, "Idempotency-Key": "L1:crm_webhook"}
    down = [await client.post("/crm/hooks/lead", json={"lead_id": "L1"}, headers=headers) for _ in range(2)]
    assert [r.status for r in down] == [503, 503]
    app[HOOKS].crm_down = False  # the partner is back: the same notification is taken
    back = await client.post("/crm/hooks/lead", json={"lead_id": "L1"}, headers=headers)
    assert (back.status, await back.json()) == (202, {"received": True})
    wrong = await client.post("/crm/hooks/lead", json={"lead_id": "L2"}, headers={"Idempotency-Key": "L2:x"})
    assert wrong.status == 401
    assert app[HOOKS].received["crm"] == [("L1:crm_webhook", "L1")] * 3 + [("L2:x", "L2")]
    assert app[HOOKS].per_key("crm") == {"L1:crm_webhook": 3, "L2:x": 1}


async def test_crm_delay_holds_the_answer_but_the_request_is_counted_at_once(
    aiohttp_client: AiohttpClient,
) -> None:
    app = create_webhooks_app(crm_delay=0.5)
    client = await aiohttp_client(app)
    started = time.monotonic()
    sent = asyncio.ensure_future(client.post("/crm/hooks/lead", json={"lead_id": "L3"}, headers=CRM_HEADERS))
    await wait_for(lambda: bool(app[HOOKS].received["crm"]), 5, "the CRM webhook to count the request")
    assert not sent.done()  # counted on arrival, before the delayed answer
    assert (await sent).status == 202
    assert time.monotonic() - started >= 0.5


async def test_slack_hook_takes_the_lead_id_from_the_idempotency_key(aiohttp_client: AiohttpClient) -> None:
    app = create_webhooks_app()
    client = await aiohttp_client(app)
    headers = {"Idempotency-Key": "lead:7:slack_alert"}
    ok = await client.post(f"/slack/services/{SLACK_TOKEN}", json={"text": "hi"}, headers=headers)
    assert (ok.status, await ok.text()) == (200, "ok")
    bad = await client.post("/slack/services/nope", json={"text": "hi"})
    assert (bad.status, await bad.text()) == (403, "invalid_token")
    assert app[HOOKS].received["slack"] == [("lead:7:slack_alert", "lead:7"), (None, None)]


async def test_validator_and_buyer_answers(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_webhooks_app())

    async def validate(email: str, phone: str) -> object:
        answer = await client.post(
            "/validate", json={"email": email, "phone": phone}, headers={"X-API-Key": VALIDATOR_KEY}
        )
        return await answer.json()

    assert await validate("ana@mail.example", "5551234567") == {
        "email_valid": True, "phone_valid": True, "reason": None,
    }  # fmt: skip
    assert (await validate("ana-at-mail", "5551234567"))["reason"] == "invalid email"
    assert (await validate("ana@mail.example", "123"))["reason"] == "invalid phone"
    assert (await validate("@mail.example", "5551234567"))["email_valid"] is False

    async def buy(lead: dict[str, str]) -> object:
        answer = await client.post(
            "/buyer/leads", json=lead, headers={"Authorization": f"Bearer {BUYER_TOKEN}"}
        )
        return await answer.json()

    assert await buy({"lead_id": "L4", "state": "CA"}) == {
        "status": "accepted",
        "reference": "BUY-L4",
        "price": 30.0,
    }
    assert await buy({"lead_id": "L5", "state": "AK"}) == {
        "status": "rejected",
        "message": "state not served",
    }
