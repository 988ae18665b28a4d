"""A stand-in buyer with a batch endpoint (the seed's "Batch Processing"): one request
carries many leads, the answer holds one result per lead, matched by ``lead_id``.

Rejects addresses at spam.example, leaves out leads whose id ends in ``-nores`` (to show a
lead missing from the answer), and records every batch it received (id and lead ids)."""

from __future__ import annotations

from aiohttp import web

BUYER_TOKEN = "buyer-token-135"
BATCHES = web.AppKey("batches", list)
TOKEN = web.AppKey("token", str)


async def submit_batch(request: web.Request) -> web.Response:
    if request.headers.get("Authorization") != f"Bearer {request.app[TOKEN]}":
        return web.json_response({"error": "invalid token"}, status=401)
    body = await request.json()
    leads = body.get("leads")
    if not isinstance(body.get("batch_id"), str) or not isinstance(leads, list):
        return web.json_response({"error": "batch_id and a leads list are required"}, status=400)
    request.app[BATCHES].append((body["batch_id"], [str(lead.get("id")) for lead in leads]))
    results = [result_for(lead) for lead in leads if not str(lead.get("id")).endswith("-nores")]
    return web.json_response({"batch_id": body["batch_id"], "received": len(leads), "results": results})


def result_for(lead: dict[str, object]) -> dict[str, object]:
    if str(lead.get("email", "")).endswith("@spam.example"):
        return {"lead_id": lead.get("id"), "status": "rejected", "reason": "blacklisted domain"}
    return {
        "lead_id": lead.get("id"),
        "status": "accepted",
        "reference": f"BB-{lead.get('id')}",
        "price": 12.5,
    }


def add_batch_routes(app: web.Application, token: str = BUYER_TOKEN) -> web.Application:
    app[TOKEN] = token
    app[BATCHES] = []
    app.router.add_post("/batch/leads", submit_batch)
    return app


def create_batch_buyer_app(token: str = BUYER_TOKEN) -> web.Application:
    return add_batch_routes(web.Application(), token)
