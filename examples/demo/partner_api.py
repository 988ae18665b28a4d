"""A local stand-in for the seed's internal blacklist API (aiohttp).

POST /blacklist/check  {email, phone, ip}  with header X-API-Key.
- wrong or missing key          -> 401 {"error": "invalid API key"}
- email without "@"             -> 422 {"reason": "invalid email"}
- email at a blacklisted domain, or phone 5550000000 -> is_blacklisted true
Run alone: python examples/demo/partner_api.py --port 8080 --api-key KEY
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
from collections import Counter

from aiohttp import web

BLACKLISTED_DOMAINS = {"spam.example", "fraud.example"}
BLACKLISTED_PHONES = {"5550000000"}
API_KEY = web.AppKey("api_key", str)
REQUESTS = web.AppKey("requests", Counter)
DELAY = web.AppKey("delay", float)


async def check_blacklist(request: web.Request) -> web.Response:
    request.app[REQUESTS]["total"] += 1
    if request.app[DELAY]:
        await asyncio.sleep(request.app[DELAY])  # simulated partner latency
    if request.headers.get("X-API-Key") != request.app[API_KEY]:
        request.app[REQUESTS]["unauthorized"] += 1
        return web.json_response({"error": "invalid API key"}, status=401)
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"reason": "body is not JSON"}, status=400)
    email = str(body.get("email") or "")
    if "@" not in email:
        return web.json_response({"reason": "invalid email"}, status=422)
    domain = email.rsplit("@", 1)[1].lower()
    phone = str(body.get("phone") or "")
    if domain in BLACKLISTED_DOMAINS:
        return web.json_response(
            {"is_blacklisted": True, "reason": f"domain {domain} is blacklisted", "risk_score": 99}
        )
    if phone in BLACKLISTED_PHONES:
        return web.json_response({"is_blacklisted": True, "reason": "phone is blacklisted", "risk_score": 95})
    # A stable pseudo-random score per email.
    score = int(hashlib.sha256(email.encode()).hexdigest()[:4], 16) % 60
    return web.json_response({"is_blacklisted": False, "reason": None, "risk_score": score})


def create_partner_app(api_key: str, delay: float = 0.0) -> web.Application:
    app = web.Application()
    app[API_KEY] = api_key
    app[DELAY] = delay
    app[REQUESTS] = Counter()
    app.router.add_post("/blacklist/check", check_blacklist)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args()
    web.run_app(create_partner_app(args.api_key, args.delay), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
