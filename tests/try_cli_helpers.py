"""``leadstreams try`` as a subprocess of the command line against the seed
partner, a lead file, and the secrets that must never show, for test_try_via_cli.py and
test_try_and_test_via_cli.py."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import orjson
from helpers import FLOWS, ROOT, seed_env, seed_partner, serve
from pytest_aiohttp import AiohttpServer

SEED_SECRETS = [
    seed_partner.INTERNAL_KEY,
    seed_partner.ROUTER_KEY,
    seed_partner.PARTNER_TOKEN,
    seed_partner.SOAP_USER,
    seed_partner.SOAP_PASSWORD,
    seed_partner.CLIENT_SECRET,
]
LEAD: dict[str, Any] = {
    "id": "cli-1",
    "first_name": "Ana",
    "last_name": "Lee",
    "email": "ana@mail.example",
    "phone": "(555) 123-4567",
    "state": "CA",
    "zip": "94105",
    "dob": "1990-05-17",
    "amount": 20000,
    "source": "web",
}


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``python -m agents.cli ARGS`` without blocking the loop that serves the partner."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agents.cli",
        *args,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "400", **(env or {})},  # wide: a secret must not wrap unseen
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def lead_file(tmp_path: Path, lead: dict[str, Any] = LEAD, text: bytes | None = None) -> str:
    path = tmp_path / "lead.json"
    path.write_bytes(orjson.dumps(lead) if text is None else text)
    return str(path)


async def try_flow(
    aiohttp_server: AiohttpServer, tmp_path: Path, flow: str, *options: str, lead: dict[str, Any] = LEAD
) -> tuple[int, str, str]:
    env = seed_env(await serve(aiohttp_server, seed_partner.create_seed_partner_app()))
    return await cli("try", str(FLOWS / flow), "--lead", lead_file(tmp_path, lead), *options, env=env)
