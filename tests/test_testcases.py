"""Saved test cases: loading, the replay transport, comparing results, running a flow's cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from helpers import FLOWS, make_flow
from yarl import URL

from streams.flow import Flow, Integration
from streams.http_types import OutgoingRequest
from streams.outcomes import FlowResult, Outcome, StepResult
from streams.problems import FlowFileError
from streams.testcases import (
    Case,
    ReplayTransport,
    compare,
    load_cases,
    load_flow_for_cases,
    run_case,
    run_cases,
)

OAUTH_FLOW = FLOWS / "oauth2-chain.yaml"
EXAMPLES_WITH_CASES = sorted(p for p in FLOWS.glob("*.yaml") if (FLOWS / f"{p.stem}.cases.yaml").exists())


def write_cases(tmp_path: Path, document: dict[str, Any]) -> Path:
    path = tmp_path / "flow.cases.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


# --- load_cases ---------------------------------------------------------------------------------

BROKEN_CASES = """\
settings: {KEY: abc}
cases:
  - name: fine
    lead: {id: a}
    expect: {outcome: success}
  - name: wrong outcome
    lead: {id: b}
    expect:
      outcome: maybe
  - name: unknown response key
    lead: {id: c}
    responses:
      call: {status: 200, jsn: {}}
    expect: {outcome: success}
"""


def test_load_cases_reports_schema_problems_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.cases.yaml"
    path.write_text(BROKEN_CASES)
    with pytest.raises(FlowFileError) as caught:
        load_cases(path)
    found = {(p.file, p.line, p.path) for p in caught.value.problems}
    assert (str(path), 9, "cases.1.expect.outcome") in found
    assert (str(path), 13, "cases.2.responses.call") in found
    assert f"{path}:9: cases.1.expect.outcome: 'maybe' is not one of" in str(caught.value)


def test_load_cases_gives_cases_and_settings_as_strings(tmp_path: Path) -> None:
    document = {
        "settings": {"PORT": 8080, "KEY": "k"},
        "cases": [
            {
                "name": "one",
                "lead": {"id": 1},
                "responses": {"a": {"json": {}}, "b": [{"status": 500}, {"json": {"x": 1}}]},
                "expect": {"outcome": "success"},
            }
        ],
    }
    cases, env = load_cases(write_cases(tmp_path, document))
    assert env == {"PORT": "8080", "KEY": "k"}
    [case] = cases
    assert case.responses == {"a": [{"json": {}}], "b": [{"status": 500}, {"json": {"x": 1}}]}


def test_load_cases_of_a_missing_file_is_a_flow_file_error(tmp_path: Path) -> None:
    with pytest.raises(FlowFileError, match="cannot read"):
        load_cases(tmp_path / "absent.cases.yaml")


# --- ReplayTransport ----------------------------------------------------------------------------

INTEGRATION = Integration(name="api", base_url="http://partner.invalid")


def request(step: str) -> OutgoingRequest:
    return OutgoingRequest("GET", URL("http://partner.invalid/x"), step=step)


async def test_replay_answers_each_step_in_order_then_runs_out() -> None:
    transport = ReplayTransport(
        {
            "first": [{"status": 201, "json": {"n": 1}}, {"body": "two", "headers": {"X-Tag": "t"}}],
            "second": [{"xml": "<a/>"}],
        }
    )
    one, two = [await transport.send(INTEGRATION, request("first"), 1.0) for _ in range(2)]
    assert (one.status, one.body, one.content_type) == (201, b'{"n":1}', "application/json")
    assert (two.status, two.body, two.content_type, two.headers["x-tag"]) == (200, b"two", "text/plain", "t")
    third = await transport.send(INTEGRATION, request("second"), 1.0)
    assert (third.body, third.content_type) == (b"<a/>", "application/xml")
    with pytest.raises(aiohttp.ClientConnectionError, match="no recorded response left for step 'first'"):
        await transport.send(INTEGRATION, request("first"), 1.0)
    assert [step for step, _ in transport.sent] == ["first", "first", "second", "first"]


def one_call_flow() -> Flow:
    return make_flow("http://partner.invalid", [{"name": "call", "timeout": "3s", "request": {"url": "/c"}}])


NO_RECORDING = (
    "connection error: ClientConnectionError: no recorded response left for step 'call' (after 3 attempts)"
)


@pytest.mark.parametrize(
    ("responses", "reason"),
    [
        # The status policy retries: a timeout once, a connection error up to 3 attempts.
        ({"call": [{"timeout": True}] * 2}, "timeout after 3s (after 2 attempts)"),
        (
            {"call": [{"connection_error": "refused"}] * 3},
            "connection error: ClientConnectionError: refused (after 3 attempts)",
        ),
        (
            {},
            NO_RECORDING,
        ),
        (
            {"other": [{"json": {}}]},
            NO_RECORDING,
        ),
    ],
    ids=["timeout", "connection-error", "no-recording", "recording-for-another-step"],
)
async def test_recorded_failures_become_error_outcomes(responses: dict[str, list[Any]], reason: str) -> None:
    case = Case("c", {"id": "L1"}, responses, {"outcome": "error"})
    report = await run_case(one_call_flow(), case)
    assert report.passed, report.mismatches
    assert report.result is not None
    assert [(s.name, s.outcome, s.reason) for s in report.result.steps] == [("call", Outcome.ERROR, reason)]


# --- compare ------------------------------------------------------------------------------------

RESULT = FlowResult(
    outcome=Outcome.FAILURE,
    reason="sell: rejected",
    lead={"id": "L1", "contact": {"email": "a@b.example"}, "score": 7},
    steps=[
        StepResult("check", Outcome.SUCCESS),
        StepResult("sell", Outcome.FAILURE, "rejected", price=0.0, reference="R-9"),
    ],
    vars={"token": "t"},
)


def test_compare_accepts_a_matching_expectation() -> None:
    expect = {
        "outcome": "failure",
        "reason": "sell: rejected",
        "lead": {"contact.email": "a@b.example", "score": 7},
        "vars": {"token": "t"},
        "steps": {"check": "success", "sell": {"outcome": "failure", "price": 0, "reference": "R-9"}},
    }
    assert compare(expect, RESULT) == []


def test_compare_reports_every_mismatch() -> None:
    expect = {
        "outcome": "success",
        "reason": None,
        "lead": {"contact.email": "x@y.example", "contact.phone": "555", "score": 7},
        "vars": {"token": "u", "missing": 1},
        "steps": {
            "check": "error",
            "sell": {"outcome": "failure", "reason": "other", "price": 45.0, "reference": None},
            "ghost": "success",
        },
    }
    assert compare(expect, RESULT) == [
        "outcome: expected success, got failure (sell: rejected)",
        "reason: expected None, got 'sell: rejected'",
        "lead.contact.email: expected 'x@y.example', got 'a@b.example'",
        "lead.contact.phone: expected '555', got None",
        "vars.token: expected 'u', got 't'",
        "vars.missing: expected 1, got None",
        "steps.check.outcome: expected 'error', got 'success'",
        "steps.sell.reason: expected 'other', got 'rejected'",
        "steps.sell.price: expected 45.0, got 0.0",
        "steps.sell.reference: expected None, got 'R-9'",
        "steps.ghost: no such step in the result",
    ]


# --- run_cases ----------------------------------------------------------------------------------


def token_then_call(token: str, lead_id: int) -> list[dict[str, Any]]:
    return [
        {"json": {"access_token": token, "expires_in": 3600}},
        {"status": 201, "json": {"lead_id": lead_id, "status": "created"}},
    ]


TWO_OAUTH_CASES: dict[str, Any] = {
    "settings": {"CRM_CLIENT_ID": "c", "CRM_CLIENT_SECRET": "s", "PARTNER_URL": "https://crm.example"},
    "cases": [
        {
            "name": f"case {n}",
            "lead": {"id": f"o{n}", "email": "a@b.example", "amount": 1},
            "responses": {"create_lead": token_then_call(f"tok-{n}", n)},
            "expect": {"outcome": "success", "lead": {"lead_id": n}, "steps": {"verify": "skip"}},
        }
        for n in (1, 2)
    ],
}


async def test_each_case_gets_a_fresh_flow_so_case_two_fetches_its_own_token(tmp_path: Path) -> None:
    cases_path = write_cases(tmp_path, TWO_OAUTH_CASES)
    reports = await run_cases(OAUTH_FLOW, cases_path)
    assert [(r.name, r.mismatches) for r in reports] == [("case 1", []), ("case 2", [])]
    assert reports[1].result is not None and reports[1].result.lead["lead_id"] == 2
    # The same cases on one shared flow: case 2's token answer is taken for the API's answer.
    cases, env = load_cases(cases_path)
    shared = load_flow_for_cases(OAUTH_FLOW, env)
    assert (await run_case(shared, cases[0])).passed
    reused = await run_case(shared, cases[1])
    assert "lead.lead_id: expected 2, got None" in reused.mismatches


async def test_run_cases_reports_flow_problems_before_running(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(OAUTH_FLOW.read_text().replace("name: create_lead", "name: create-lead"))
    with pytest.raises(FlowFileError) as caught:
        await run_cases(flow, write_cases(tmp_path, TWO_OAUTH_CASES))
    assert any(p.path == "steps.0.name" for p in caught.value.problems)


@pytest.mark.parametrize("flow", EXAMPLES_WITH_CASES, ids=lambda p: p.stem)
async def test_every_example_flow_passes_its_saved_cases(flow: Path) -> None:
    reports = await run_cases(flow)
    assert reports, f"{flow.name} has no cases"
    assert {r.name: r.mismatches for r in reports if not r.passed} == {}
