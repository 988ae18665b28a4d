"""``from streams import load_flow, run_lead``: a lead through a flow file (no `topics:`), no Kafka."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from helpers import recording_app
from pytest_aiohttp import AiohttpServer

from streams import load_flow, run_lead
from streams.outcomes import Outcome

FLOW = """\
version: 1
name: library
integrations:
  validator:
    base_url: ${VALIDATOR_URL}
    allow_loopback: true
steps:
  - name: validate
    integration: validator
    request:
      method: POST
      url: /validate
      json: {email: "{{ lead.email }}"}
    map:
      email_valid: "{{ response.valid }}"
"""


async def validator(request: web.Request) -> web.Response:
    body: dict[str, Any] = await request.json()
    return web.json_response({"valid": body["email"].endswith("@example.com")})


@pytest.fixture
async def flow_file(tmp_path: Path, aiohttp_server: AiohttpServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    app, _ = recording_app(validator)
    server = await aiohttp_server(app)
    monkeypatch.setenv("VALIDATOR_URL", str(server.make_url("")))
    path = tmp_path / "library.yaml"
    path.write_text(FLOW, encoding="utf-8")
    return path


async def test_a_lead_runs_through_a_flow_file(flow_file: Path) -> None:
    lead = {"id": "L1", "email": "ann@example.com"}
    result = await run_lead(flow_file, lead)
    assert result.outcome is Outcome.SUCCESS
    assert result.lead == {"id": "L1", "email": "ann@example.com", "email_valid": True}
    assert lead == {"id": "L1", "email": "ann@example.com"}  # the caller's lead is not changed
    assert [(step.name, step.http_status) for step in result.steps] == [("validate", 200)]


async def test_a_loaded_flow_runs_many_leads(flow_file: Path) -> None:
    flow = load_flow(flow_file)
    results = [await run_lead(flow, {"email": email}) for email in ("a@example.com", "b@elsewhere.test")]
    assert [r.lead["email_valid"] for r in results] == [True, False]
