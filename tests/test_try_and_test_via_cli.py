"""``leadstreams try`` against the seed partner on a real local port, and ``leadstreams test``,
both run as a user would: a subprocess of the command line."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from helpers import FLOWS, ROOT, json_handler, recording_app, seed_env, seed_partner, serve
from pytest_aiohttp import AiohttpServer
from resilience_helpers import closed_port_url
from yarl import URL

from streams.step.batch import batch_id_for

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


# --- try ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flow", "mapped"),
    [
        ("demo.yaml", {"check_blacklist": {"blacklisted": False, "risk_score": 12}}),
        ("soap-validate.yaml", {"validate": {"validation_score": 85, "status": "Success"}}),
        (
            "partner-submission.yaml",
            {"submit": {"lead_id": 12345, "buyer_status": "accepted", "price": 45.0}},
        ),
        (
            "oauth2-chain.yaml",
            {"create_lead": {"lead_id": 12345}, "verify": {"verified": True, "status": "Success"}},
        ),
        (
            "regional-router.yaml",
            {"validate": {"validation_score": 85, "status": "Success", "region": "west"}},
        ),
        ("xml-score.yaml", {"score": {"validation_score": 85, "status": "Success"}}),
        ("pipe-text.yaml", {"post_lead": {"lead_id": 12345, "price": 45.0}}),
        ("regex-text.yaml", {"submit": {"lead_id": 12345, "price": 45.0}}),
        ("hmac-signed.yaml", {"submit": {"buyer_reference": "HX-12345", "price": 45.0}}),
        (  # a batch of one: the console does not wait for a window
            "batch-submission.yaml",
            {
                "submit_batch": {
                    "buyer_status": "accepted",
                    "buyer_batch": batch_id_for("batch-submission", "submit_batch", ["cli-1"]),
                }
            },
        ),
        (
            "parallel-validations.yaml",
            {
                "email_check": {"email_valid": True},
                "phone_check": {"phone_valid": True},
                "address_check": {"address_valid": True},
            },
        ),
    ],
)
async def test_try_json_runs_the_real_requests(
    aiohttp_server: AiohttpServer, tmp_path: Path, flow: str, mapped: dict[str, dict[str, Any]]
) -> None:
    code, out, err = await try_flow(aiohttp_server, tmp_path, flow, "--json")
    assert code == 0, err
    report = orjson.loads(out)
    assert report["outcome"] == "success"
    assert {step["name"]: step["mapped"] for step in report["steps"]} == mapped
    for fields in mapped.values():
        assert fields.items() <= report["lead"].items()


async def test_try_shows_price_and_reference(aiohttp_server: AiohttpServer, tmp_path: Path) -> None:
    code, out, err = await try_flow(aiohttp_server, tmp_path, "partner-submission.yaml", "--json")
    [step] = orjson.loads(out)["steps"]
    assert code == 0, err
    assert (step["price"], step["reference"], step["http_status"]) == (45.0, "12345", 200)


async def test_try_exits_1_when_the_lead_ends_in_error(aiohttp_server: AiohttpServer, tmp_path: Path) -> None:
    no_email = {key: value for key, value in LEAD.items() if key != "email"}
    code, out, _ = await try_flow(
        aiohttp_server, tmp_path, "partner-submission.yaml", "--json", lead=no_email
    )
    assert code == 1
    report = orjson.loads(out)
    assert (report["outcome"], report["reason"]) == ("error", "submit: HTTP 422: contact.email is required")


@pytest.mark.parametrize(
    "flow",
    [
        "demo.yaml",
        "soap-validate.yaml",
        "partner-submission.yaml",
        "oauth2-chain.yaml",
        "regional-router.yaml",
        "pipe-text.yaml",
    ],
)
async def test_try_text_output_shows_no_secret(
    aiohttp_server: AiohttpServer, tmp_path: Path, flow: str
) -> None:
    code, out, err = await try_flow(aiohttp_server, tmp_path, flow, "--verbose")
    assert code == 0, err
    assert "lead outcome: success" in out and "***" in out
    assert [secret for secret in SEED_SECRETS if secret in out + err] == []


async def test_try_step_runs_up_to_that_step_and_shows_only_it(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    code, out, err = await try_flow(
        aiohttp_server, tmp_path, "oauth2-chain.yaml", "--step", "create_lead", "--json"
    )
    assert code == 0, err
    report = orjson.loads(out)
    assert [step["name"] for step in report["steps"]] == ["create_lead"]
    assert report["lead"]["lead_id"] == 12345 and "verified" not in report["lead"]


async def test_try_step_in_text_mode_names_only_that_step(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    code, out, err = await try_flow(aiohttp_server, tmp_path, "oauth2-chain.yaml", "--step", "verify")
    assert code == 0, err
    assert "verify: success" in out and "create_lead:" not in out


async def test_try_says_in_words_why_the_partner_did_not_answer(tmp_path: Path) -> None:
    url = URL(closed_port_url())
    code, out, err = await cli(
        "try", str(FLOWS / "demo.yaml"), "--lead", lead_file(tmp_path), env=seed_env(str(url))
    )
    assert code == 1, err
    assert f"check_blacklist: error — connection refused by 127.0.0.1:{url.port} (after 3 attempts)" in out
    assert "ssl:default" not in out and "Cannot connect" not in out


async def test_try_unknown_step_is_a_usage_error(tmp_path: Path) -> None:
    env = seed_env("http://127.0.0.1:9")
    code, _, err = await cli(
        "try", str(FLOWS / "demo.yaml"), "--lead", lead_file(tmp_path), "--step", "nope", env=env
    )
    assert code == 2 and "no step 'nope'" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("text", "message"), [(b"{not json", "not valid JSON"), (b"[1, 2]", "a lead must be a JSON object")]
)
async def test_try_with_a_bad_lead_file_is_a_clear_error(tmp_path: Path, text: bytes, message: str) -> None:
    env = seed_env("http://127.0.0.1:9")  # never contacted: the lead is refused first
    code, out, err = await cli(
        "try", str(FLOWS / "demo.yaml"), "--lead", lead_file(tmp_path, text=text), env=env
    )
    assert code == 2
    assert "--lead" in err and message in err
    assert "Traceback" not in err and out == ""


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


# --- --allow-loopback: local partners for any flow, during development --------------------------

PLAIN_FLOW = """\
version: 1
name: plain
topics: {input: in, enriched: out, errors: err}
integrations:
  api: {base_url: "${PARTNER_URL}"}
steps:
  - name: score
    integration: api
    request: {method: GET, url: /score}
    map: {score: "{{ response.score }}"}
"""


@pytest.mark.parametrize(
    ("switch", "env"),
    [
        ((), {"LEADSTREAMS_ALLOW_LOOPBACK": "0"}),
        (("--allow-loopback",), {}),
        ((), {"LEADSTREAMS_ALLOW_LOOPBACK": "1"}),
    ],
    ids=["off", "option", "environment"],
)
async def test_allow_loopback_lets_a_flow_without_a_loopback_setting_reach_a_local_partner(
    aiohttp_server: AiohttpServer, tmp_path: Path, switch: tuple[str, ...], env: dict[str, str]
) -> None:
    app, received = recording_app(json_handler({"score": 7}))
    flow = tmp_path / "plain.yaml"
    flow.write_text(PLAIN_FLOW)
    code, out, err = await cli(
        "try", str(flow), "--lead", lead_file(tmp_path), "--json", *switch,
        env={"PARTNER_URL": await serve(aiohttp_server, app), **env},
    )  # fmt: skip
    report = orjson.loads(out)
    if not switch and env["LEADSTREAMS_ALLOW_LOOPBACK"] == "0":
        assert code == 1 and received == []
        assert "127.0.0.1 is a loopback address" in report["steps"][0]["reason"]
        assert "--allow-loopback" in report["steps"][0]["reason"]  # the refusal names the switch
    else:
        assert code == 0, err
        assert report["lead"]["score"] == 7 and len(received) == 1


async def test_worker_warns_at_start_when_loopback_is_allowed(tmp_path: Path) -> None:
    flow = tmp_path / "plain.yaml"
    flow.write_text(PLAIN_FLOW)
    args = (
        "worker",
        str(flow),
        "--bootstrap",
        closed_port_url().removeprefix("http://"),
        "--broker-wait",
        "0",
    )
    code, out, err = await cli(*args, "--allow-loopback", env={"PARTNER_URL": "https://partner.example"})
    assert code == 3  # no broker: it stops there, after the warning
    assert "WARNING" in out + err and "--allow-loopback (LEADSTREAMS_ALLOW_LOOPBACK) is on" in out + err
    code, out, err = await cli(*args, env={"PARTNER_URL": "https://partner.example"})
    assert code == 3 and "allow-loopback" not in out + err
