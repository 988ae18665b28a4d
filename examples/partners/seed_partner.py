"""A local stand-in for every partner API of the example flows (aiohttp).

Each endpoint checks its credentials and answers like the seed's examples:
validation_score 85 / status Success, lead_id 12345, price 45.00, …
Run alone: python examples/partners/seed_partner.py --port 8081
(credentials below are the defaults the example flows use when no env is set).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections import Counter

from aiohttp import web
from batch_buyer import add_batch_routes
from lxml import etree

INTERNAL_KEY = "internal-key-123"
ROUTER_KEY = "router-key-456"
PARTNER_TOKEN = "partner-token-789"
SOAP_USER, SOAP_PASSWORD = "soap-user", "soap-pass-321"
SCORE_USER, SCORE_PASSWORD = "score-user", "score-pass-654"
CLIENT_ID, CLIENT_SECRET = "crm-client", "crm-secret-987"
HMAC_KEY_ID, HMAC_SECRET = "key-1", "hmac-secret-246"
VALIDATION_DELAY = 0.2  # seconds each parallel validation takes
CALLS = web.AppKey("calls", Counter)
TOKENS = web.AppKey("tokens", set)
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"


def unauthorized(message: str = "invalid credentials") -> web.Response:
    return web.json_response({"error": message}, status=401)


async def blacklist(request: web.Request) -> web.Response:
    if request.headers.get("X-API-Key") != INTERNAL_KEY:
        return unauthorized()
    body = await request.json()
    listed = str(body.get("email", "")).endswith("@spam.example")
    return web.json_response(
        {
            "is_blacklisted": listed,
            "reason": "domain is blacklisted" if listed else None,
            "risk_score": 99 if listed else 12,
        }
    )


async def regional_validate(request: web.Request) -> web.Response:
    if request.query.get("api_key") != ROUTER_KEY:
        return unauthorized()
    region, state = request.match_info["region"], request.match_info["state"]
    test = request.query.get("test") == "true"
    return web.json_response(
        {
            "region": region,
            "state": state,
            "source": request.query.get("source"),
            "type": request.query.get("type"),
            "test": test,
            "validation_score": 85,
            "status": "Success",
        }
    )


async def partner_leads(request: web.Request) -> web.Response:
    if request.headers.get("Authorization") != f"Bearer {PARTNER_TOKEN}":
        return unauthorized()
    body = await request.json()
    contact = body.get("lead", {}).get("contact", {})
    if not contact.get("email"):
        return web.json_response({"status": "rejected", "message": "contact.email is required"}, status=422)
    if body.get("lead", {}).get("address", {}).get("state") == "AK":
        return web.json_response({"status": "rejected", "message": "state not served"})
    return web.json_response({"status": "accepted", "lead_id": 12345, "price": 45.00})


async def soap_validate(request: web.Request) -> web.Response:
    if request.headers.get("SOAPAction", "").strip('"') != "http://partner.example/ValidateLead":
        return soap_fault("Client", "unknown SOAPAction")
    root = etree.fromstring(await request.read(), etree.XMLParser(resolve_entities=False, no_network=True))
    ns = {"soap": SOAP11, "p": "http://partner.example/"}
    user = root.findtext(".//p:AuthHeader/p:Username", namespaces=ns)
    password = root.findtext(".//p:AuthHeader/p:Password", namespaces=ns)
    if (user, password) != (SOAP_USER, SOAP_PASSWORD):
        return soap_fault("Client", "authentication failed")
    email = root.findtext(".//p:ValidateLead/p:Email", namespaces=ns) or ""
    valid = "@" in email
    body = (
        f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body>'
        '<ValidateLeadResponse xmlns="http://partner.example/"><ValidateLeadResult>'
        f"<IsValid>{'true' if valid else 'false'}</IsValid><Score>{85 if valid else 10}</Score>"
        f"<Status>{'Success' if valid else 'Invalid'}</Status>"
        "</ValidateLeadResult></ValidateLeadResponse></soap:Body></soap:Envelope>"
    )
    return web.Response(text=body, content_type="text/xml")


def soap_fault(code: str, message: str) -> web.Response:
    body = (
        f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body><soap:Fault>'
        f"<faultcode>soap:{code}</faultcode><faultstring>{message}</faultstring>"
        "</soap:Fault></soap:Body></soap:Envelope>"
    )
    return web.Response(text=body, status=500, content_type="text/xml")


async def xml_score(request: web.Request) -> web.Response:
    expected = "Basic " + base64.b64encode(f"{SCORE_USER}:{SCORE_PASSWORD}".encode()).decode()
    if request.headers.get("Authorization") != expected:
        return web.Response(
            text="<Error><Message>unauthorized</Message></Error>", status=401, content_type="application/xml"
        )
    root = etree.fromstring(await request.read(), etree.XMLParser(resolve_entities=False, no_network=True))
    state = root.findtext("Lead/State")
    score = 85 if state != "AK" else 20
    body = (
        '<?xml version="1.0"?><ScoreResponse><Result>'
        f"<Score>{score}</Score><Status>{'Success' if score > 50 else 'Low'}</Status>"
        f'<Lead id="{root.get("id")}"/></Result></ScoreResponse>'
    )
    return web.Response(text=body, content_type="application/xml")


async def pipe_text(request: web.Request) -> web.Response:
    form = await request.post()
    if form.get("key") != INTERNAL_KEY:
        return web.Response(text="ERROR|0|0.00|bad key", status=401)
    if not form.get("phone"):
        return web.Response(text="REJECT|0|0.00|phone required")
    return web.Response(text="OK|12345|45.00|accepted")


async def regex_text(request: web.Request) -> web.Response:
    if request.headers.get("X-API-Key") != INTERNAL_KEY:
        return web.Response(text="Error: unauthorized", status=401)
    text = await request.text()
    if "DUPLICATE" in text:
        return web.Response(text="Lead rejected. Reason: duplicate")
    return web.Response(text="Lead accepted. ID: 12345. Price: $45.00. Thank you.")


async def oauth_token(request: web.Request) -> web.Response:
    form = await request.post()
    if (form.get("grant_type"), form.get("client_id"), form.get("client_secret")) != (
        "client_credentials",
        CLIENT_ID,
        CLIENT_SECRET,
    ):
        return web.json_response({"error": "invalid_client"}, status=401)
    request.app[CALLS]["token"] += 1
    token = secrets.token_hex(8)
    request.app[TOKENS].add(token)
    return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": 3600})


def bearer_ok(request: web.Request) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme == "Bearer" and token in request.app[TOKENS]


async def crm_create(request: web.Request) -> web.Response:
    if not bearer_ok(request):
        return unauthorized("invalid token")
    body = await request.json()
    status = "pending" if body.get("amount", 0) > 10000 else "created"
    return web.json_response({"lead_id": 12345, "status": status}, status=201)


async def crm_verify(request: web.Request) -> web.Response:
    if not bearer_ok(request):
        return unauthorized("invalid token")
    return web.json_response(
        {"lead_id": int(request.match_info["lead_id"]), "verified": True, "status": "Success"}
    )


async def signed_leads(request: web.Request) -> web.Response:
    body = await request.read()
    stamp = request.headers.get("X-Timestamp", "")
    message = f"{request.method}\n{request.path_qs}\n{stamp}\n{body.decode()}".encode()
    expected = hmac.new(HMAC_SECRET.encode(), message, hashlib.sha256).hexdigest()
    fresh = stamp.isdigit() and abs(time.time() - int(stamp)) < 300
    if (
        request.headers.get("X-Key-Id") != HMAC_KEY_ID
        or not fresh
        or not hmac.compare_digest(request.headers.get("X-Signature", ""), expected)
    ):
        return web.json_response({"accepted": False, "message": "bad signature"}, status=401)
    return web.json_response({"accepted": True, "reference": "HX-12345", "price": 45.00})


def validator(field: str, check: str) -> web.Handler:
    async def validate(request: web.Request) -> web.Response:
        if request.headers.get("X-API-Key") != INTERNAL_KEY:
            return unauthorized()
        await asyncio.sleep(VALIDATION_DELAY)  # simulated partner latency
        value = str(request.query.get(field, ""))
        return web.json_response({"valid": check in value, field: value})

    return validate


def create_seed_partner_app() -> web.Application:
    app = web.Application()
    app[CALLS] = Counter()
    app[TOKENS] = set()
    app.router.add_post("/blacklist/check", blacklist)
    app.router.add_get("/{region}/v2/leads/{state}/validate", regional_validate)
    app.router.add_post("/api/leads", partner_leads)
    app.router.add_post("/soap/LeadService.asmx", soap_validate)
    app.router.add_post("/score", xml_score)
    app.router.add_post("/text/pipe", pipe_text)
    app.router.add_post("/text/submit", regex_text)
    app.router.add_post("/oauth/token", oauth_token)
    app.router.add_post("/crm/leads", crm_create)
    app.router.add_get("/crm/leads/{lead_id}/verify", crm_verify)
    app.router.add_post("/signed/leads", signed_leads)
    app.router.add_get("/validate/email", validator("email", "@"))
    app.router.add_get("/validate/phone", validator("phone", "555"))
    app.router.add_get("/validate/address", validator("zip", "9"))
    return add_batch_routes(app)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    web.run_app(create_seed_partner_app(), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
