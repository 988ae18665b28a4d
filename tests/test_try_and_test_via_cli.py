"""``leadstreams test`` on the examples and on wrong or malformed
cases, and ``leadstreams try --record`` turning a real exchange into a case that ``test`` replays,
both run as a user would: a subprocess of the command line."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from helpers import FLOWS, seed_env, seed_partner, serve
from pytest_aiohttp import AiohttpServer
from resilience_helpers import closed_port_url
from try_cli_helpers import LEAD, cli, lead_file

# --- test ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("flow", sorted(p.name for p in FLOWS.glob("*.cases.yaml")))
async def test_test_passes_on_the_examples(flow: str) -> None:
    code, out, err = await cli("test", str(FLOWS / flow.replace(".cases.yaml", ".yaml")))
    assert code == 0, out + err
    assert "FAIL" not in out and " 0 failed" in out


def copy_demo_with_cases(tmp_path: Path, cases: str) -> Path:
    flow = tmp_path / "demo.yaml"
    shutil.copy(FLOWS / "demo.yaml", flow)
    (tmp_path / "demo.cases.yaml").write_text(cases)
    return flow


WRONG_EXPECTATION = {
    "settings": {"INTERNAL_API_KEY": "test-key-0001"},
    "cases": [
        {
            "name": "right",
            "lead": {"id": "a", "email": "ana@mail.example"},
            "responses": {"check_blacklist": {"json": {"is_blacklisted": False, "risk_score": 12}}},
            "expect": {"outcome": "success", "lead": {"risk_score": 12}},
        },
        {
            "name": "wrong",
            "lead": {"id": "b", "email": "ana@mail.example"},
            "responses": {"check_blacklist": {"json": {"is_blacklisted": False, "risk_score": 12}}},
            "expect": {"outcome": "failure", "lead": {"risk_score": 13}},
        },
    ],
}


async def test_test_exits_1_and_prints_each_mismatch(tmp_path: Path) -> None:
    flow = copy_demo_with_cases(tmp_path, yaml.safe_dump(WRONG_EXPECTATION, sort_keys=False))
    code, out, _ = await cli("test", str(flow))
    assert code == 1
    lines = [line.strip() for line in out.splitlines()]
    assert lines == [
        "PASS right",
        "FAIL wrong",
        "outcome: expected failure, got success (None)",
        "lead.risk_score: expected 13, got 12",
        "1 passed, 1 failed",
    ]


async def test_test_prints_case_names_with_brackets_as_written(tmp_path: Path) -> None:
    [case, _] = WRONG_EXPECTATION["cases"]
    names = ["email [invalid]", "odd [/] name", "[bold]loud"]
    cases = {**WRONG_EXPECTATION, "cases": [{**case, "name": name} for name in names]}
    flow = copy_demo_with_cases(tmp_path, yaml.safe_dump(cases, sort_keys=False))
    code, out, err = await cli("test", str(flow))
    assert code == 0, err
    assert [line.strip() for line in out.splitlines()] == [f"PASS {name}" for name in names] + [
        "3 passed, 0 failed"
    ]


MALFORMED_CASES = """\
cases:
  - name: no lead
    expect: {outcome: success}
  - name: misspelt expectation
    lead: {}
    expect: {outcom: skip}
"""


async def test_test_on_a_malformed_cases_file_exits_2_with_file_and_line(tmp_path: Path) -> None:
    flow = copy_demo_with_cases(tmp_path, MALFORMED_CASES)
    code, out, err = await cli("test", str(flow))
    cases_file = tmp_path / "demo.cases.yaml"
    assert code == 2 and out == ""
    assert f"{cases_file}:2: cases.0: 'lead' is a required property" in err
    assert f"{cases_file}:6: cases.1.expect: " in err
    assert "Traceback" not in err


async def test_test_with_an_explicit_cases_file_that_is_missing_exits_2(tmp_path: Path) -> None:
    code, _, err = await cli("test", str(FLOWS / "demo.yaml"), "--cases", str(tmp_path / "none.yaml"))
    assert code == 2 and "cannot read" in err and "Traceback" not in err


# --- try --record: a real exchange becomes a case that `test` replays --------------------------


def copy_flow(tmp_path: Path, name: str, with_cases: bool = False) -> Path:
    flow = tmp_path / name
    shutil.copy(FLOWS / name, flow)
    if with_cases:
        shutil.copy(
            FLOWS / name.replace(".yaml", ".cases.yaml"), tmp_path / name.replace(".yaml", ".cases.yaml")
        )
    return flow


async def record(
    flow: Path, tmp_path: Path, env: dict[str, str], lead: dict[str, Any], *options: str
) -> tuple[int, str, str]:
    return await cli("try", str(flow), "--lead", lead_file(tmp_path, lead), "--record", *options, env=env)


async def test_a_recorded_oauth2_chain_replays_without_its_secrets(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    app = seed_partner.create_seed_partner_app()
    env = seed_env(await serve(aiohttp_server, app))
    flow = copy_flow(tmp_path, "oauth2-chain.yaml")
    code, out, err = await record(flow, tmp_path, env, LEAD, "--json")
    assert code == 0, err
    assert orjson.loads(out)["outcome"] == "success"  # stdout stays one JSON document
    cases_file = tmp_path / "oauth2-chain.cases.yaml"
    assert f"recorded case 'cli-1: success' in {cases_file}" in err
    text = cases_file.read_text()
    issued = app[seed_partner.TOKENS]
    for secret in [seed_partner.CLIENT_ID, seed_partner.CLIENT_SECRET, *issued]:
        assert secret not in text
    saved = yaml.safe_load(text)
    assert saved["settings"] == {
        "CRM_CLIENT_ID": "recorded-1",  # "recorded-crm-client-id" would hold "crm-client", the real id
        "CRM_CLIENT_SECRET": "recorded-2",
        "PARTNER_URL": env["PARTNER_URL"],
        "PARTNER_ALLOW_LOOPBACK": "true",
    }
    [case] = saved["cases"]
    token, created = case["responses"]["create_lead"]  # the token request, then the call, in order
    assert token == {
        "status": 200,
        "json": {"access_token": "***", "token_type": "Bearer", "expires_in": 3600},
    }
    assert created["json"] == {"lead_id": 12345, "status": "pending"}
    assert case["expect"] == {
        "outcome": "success",
        "reason": None,
        "lead": {"lead_id": 12345, "status": "Success", "verified": True},
        "vars": {"crm_id": 12345, "crm_status": "pending"},
        "steps": {"create_lead": {"outcome": "success", "reference": "12345"}, "verify": "success"},
    }
    code, out, err = await cli("test", str(flow))  # no partner, no CRM_* variables in the environment
    assert code == 0, out + err
    assert out.split() == ["PASS", "cli-1:", "success", "1", "passed,", "0", "failed"]


async def test_recording_appends_to_existing_cases_keeping_comments_and_names(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    env = seed_env(await serve(aiohttp_server, seed_partner.create_seed_partner_app()))
    flow = copy_flow(tmp_path, "demo.yaml", with_cases=True)
    cases_file = tmp_path / "demo.cases.yaml"
    before = cases_file.read_text()
    spam = {"id": "r1", "email": "bad@spam.example", "source": {"id": "web"}}
    for _ in range(2):
        code, _, err = await record(flow, tmp_path, env, spam, "--case-name", "spam is refused")
        assert code == 0, err
    assert "recorded case 'spam is refused (2)'" in err
    assert "lack PARTNER_ALLOW_LOOPBACK" in err  # the file's own settings stand; the replay reads the env
    after = cases_file.read_text()
    assert after.startswith(before)  # every existing case and comment, byte for byte
    cases = yaml.safe_load(after)["cases"]
    assert [c["name"] for c in cases[-2:]] == ["spam is refused", "spam is refused (2)"]
    assert cases[-1]["expect"] == {
        "outcome": "failure",
        "reason": "check_blacklist: domain is blacklisted",
        "lead": {"blacklisted": True, "risk_score": 99},
        "steps": {"check_blacklist": {"outcome": "failure", "reason": "domain is blacklisted"}},
    }
    assert seed_partner.INTERNAL_KEY not in after
    code, out, err = await cli("test", str(flow), env={"PARTNER_ALLOW_LOOPBACK": "true"})
    assert code == 0, out + err
    assert out.splitlines()[-1] == f"{len(cases)} passed, 0 failed"


async def test_a_recorded_connection_failure_replays_to_the_same_outcome(tmp_path: Path) -> None:
    env = {**seed_env(closed_port_url()), "INTERNAL_API_KEY": seed_partner.INTERNAL_KEY}
    flow = FLOWS / "demo.yaml"  # the cases go elsewhere: --cases
    cases = tmp_path / "down.cases.yaml"
    lead = {"id": "down", "email": "ana@mail.example"}
    code, _, err = await record(flow, tmp_path, env, lead, "--cases", str(cases))
    assert code == 1, err  # the lead's outcome is error
    [case] = yaml.safe_load(cases.read_text())["cases"]
    answers = case["responses"]["check_blacklist"]
    assert len(answers) == 3 and all(
        a["connection_error"].startswith("connection refused by") for a in answers
    )
    # The replay words a recorded connection error its own way: only the outcomes are expected.
    assert case["expect"] == {"outcome": "error", "steps": {"check_blacklist": "error"}}
    code, out, err = await cli("test", str(flow), "--cases", str(cases))
    assert code == 0, out + err


async def test_a_recording_that_cannot_be_written_is_shown_not_lost(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    env = seed_env(await serve(aiohttp_server, seed_partner.create_seed_partner_app()))
    spam = {"id": "r1", "email": "bad@spam.example", "source": {"id": "web"}}
    nowhere = tmp_path / "no" / "such" / "dir" / "x.cases.yaml"
    code, out, err = await record(FLOWS / "demo.yaml", tmp_path, env, spam, "--cases", str(nowhere), "--json")
    assert code == 2 and "Traceback" not in err, err
    assert orjson.loads(out)["outcome"] == "failure"  # stdout stays one JSON document
    assert f"error: not recorded: cannot write {nowhere}: No such file or directory" in err
    shown = yaml.safe_load(err.split("# the recorded case, not saved:\n", 1)[1].split("error:", 1)[0])
    [case] = shown["cases"]  # a cases file of its own, to save by hand
    assert case["expect"]["reason"] == "check_blacklist: domain is blacklisted"
    assert seed_partner.INTERNAL_KEY not in err


async def test_record_refuses_a_partial_run(tmp_path: Path) -> None:
    code, _, err = await cli(
        "try",
        str(FLOWS / "demo.yaml"),
        "--lead",
        lead_file(tmp_path),
        "--record",
        "--step",
        "check_blacklist",
        env=seed_env("https://internal.example"),
    )
    assert code == 2 and "drop --step" in err and not (tmp_path / "demo.cases.yaml").exists()
