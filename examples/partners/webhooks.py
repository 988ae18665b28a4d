"""The four partners of examples/flows/notify-webhooks.yaml in one aiohttp app.

    POST /validate               validator   X-API-Key VALIDATOR_KEY; {email, phone}
                                             -> {email_valid, phone_valid, reason}
    POST /buyer/leads            buyer       Bearer BUYER_TOKEN; {lead_id, state, ...}
                                             -> {status: accepted, reference: BUY-<lead_id>, price: 30.0}
                                                or {status: rejected, message: state not served} (state AK)
    POST /crm/hooks/lead         CRM         X-Webhook-Secret CRM_SECRET; {lead_id, ...}
                                             -> 202 {received: true}
    POST /slack/services/{token} Slack-style token SLACK_TOKEN; {text} -> 200 "ok"

Knobs a test sets, and what the partners saw, are one object on the app:

    hooks = app[HOOKS]
    hooks.crm_delay = 2.0   # seconds the CRM webhook waits before answering (default 0)
    hooks.crm_down = True   # the CRM webhook answers 503 until set back to False
    hooks.received["crm"]   # [(Idempotency-Key, lead id), ...] in arrival order; endpoints
                            # "validate", "buyer", "crm", "slack"
    hooks.per_key("crm")    # Counter: Idempotency-Key -> requests received

Every request is counted as it arrives, before any check, delay or 503.
The lead id is the body's ``lead_id``, else the Idempotency-Key's part before its last
``:`` (the engine sends ``<lead id>:<step>``): the Slack-style body is only ``{"text"}``.
``partner_env(base_url)`` is the environment the flow needs to reach this app.

Run by hand: python -m examples.partners.webhooks --port 8082 [--crm-delay 2] [--crm-down]
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

VALIDATOR_KEY = "validator-key-531"
BUYER_TOKEN = "buyer-token-864"
CRM_SECRET = "crm-hook-secret-975"
SLACK_TOKEN = "T0001-B0001-hook-420"
ENDPOINTS = ("validate", "buyer", "crm", "slack")


@dataclass
class Hooks:
    """The knobs and the counts; one mutable object, as aiohttp wants an app's own
    state left alone once it runs."""

    crm_delay: float = 0.0
    crm_down: bool = False
    received: dict[str, list[tuple[str | None, str | None]]] = field(
        default_factory=lambda: {endpoint: [] for endpoint in ENDPOINTS}
    )

    def per_key(self, endpoint: str) -> Counter[str | None]:
        """Requests ``endpoint`` received per Idempotency-Key."""
        return Counter(key for key, _ in self.received[endpoint])


HOOKS = web.AppKey("hooks", Hooks)


async def record(request: web.Request, endpoint: str) -> dict[str, object]:
    """Count the request under ``endpoint`` and return its JSON body ({} when it has none)."""
    key = request.headers.get("Idempotency-Key")
    try:
        parsed = await request.json()
    except ValueError:
        parsed = None
    body: dict[str, object] = parsed if isinstance(parsed, dict) else {}
    lead_id = body.get("lead_id")
    if lead_id is None and key is not None:
        lead_id = key.rpartition(":")[0] or None
    request.app[HOOKS].received[endpoint].append((key, None if lead_id is None else str(lead_id)))
    return body


def unauthorized() -> web.Response:
    return web.json_response({"error": "invalid credentials"}, status=401)


async def validate(request: web.Request) -> web.Response:
    body = await record(request, "validate")
    if request.headers.get("X-API-Key") != VALIDATOR_KEY:
        return unauthorized()
    email, phone = str(body.get("email") or ""), str(body.get("phone") or "")
    local, _, domain = email.partition("@")
    email_valid = bool(local) and "." in domain.strip(".")
    phone_valid = len(phone) == 10 and phone.isdigit()
    reason = None if email_valid else "invalid email"
    reason = reason or (None if phone_valid else "invalid phone")
    return web.json_response({"email_valid": email_valid, "phone_valid": phone_valid, "reason": reason})


async def buyer_leads(request: web.Request) -> web.Response:
    body = await record(request, "buyer")
    if request.headers.get("Authorization") != f"Bearer {BUYER_TOKEN}":
        return unauthorized()
    if not body.get("lead_id"):
        return web.json_response({"status": "rejected", "message": "lead_id is required"}, status=422)
    if body.get("state") == "AK":
        return web.json_response({"status": "rejected", "message": "state not served"})
    return web.json_response({"status": "accepted", "reference": f"BUY-{body['lead_id']}", "price": 30.0})


async def crm_hook(request: web.Request) -> web.Response:
    await record(request, "crm")
    hooks = request.app[HOOKS]
    if hooks.crm_down:
        return web.json_response({"error": "maintenance"}, status=503)
    if hooks.crm_delay:
        await asyncio.sleep(hooks.crm_delay)  # a slow webhook: what notify: keeps off the lead's path
    if request.headers.get("X-Webhook-Secret") != CRM_SECRET:
        return unauthorized()
    return web.json_response({"received": True}, status=202)


async def slack_hook(request: web.Request) -> web.Response:
    body = await record(request, "slack")
    if request.match_info["token"] != SLACK_TOKEN:
        return web.Response(text="invalid_token", status=403)  # as Slack answers
    if not body.get("text"):
        return web.Response(text="no_text", status=400)
    return web.Response(text="ok")


def partner_env(base_url: str) -> dict[str, str]:
    """The environment notify-webhooks.yaml needs to talk to this app at ``base_url``."""
    return {
        "VALIDATOR_URL": base_url,
        "BUYER_URL": base_url,
        "CRM_URL": f"{base_url}/crm",
        "SLACK_URL": f"{base_url}/slack",
        "PARTNER_ALLOW_LOOPBACK": "true",
        "VALIDATOR_KEY": VALIDATOR_KEY,
        "BUYER_TOKEN": BUYER_TOKEN,
        "CRM_WEBHOOK_SECRET": CRM_SECRET,
        "SLACK_HOOK_TOKEN": SLACK_TOKEN,
    }


def create_webhooks_app(crm_delay: float = 0.0, crm_down: bool = False) -> web.Application:
    app = web.Application()
    app[HOOKS] = Hooks(crm_delay=crm_delay, crm_down=crm_down)
    app.router.add_post("/validate", validate)
    app.router.add_post("/buyer/leads", buyer_leads)
    app.router.add_post("/crm/hooks/lead", crm_hook)
    app.router.add_post("/slack/services/{token}", slack_hook)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--crm-delay", type=float, default=0.0, help="seconds the CRM webhook waits")
    parser.add_argument("--crm-down", action="store_true", help="the CRM webhook answers 503")
    args = parser.parse_args()
    for name, value in partner_env(f"http://{args.host}:{args.port}").items():
        print(f"export {name}={value}")
    web.run_app(create_webhooks_app(args.crm_delay, args.crm_down), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
