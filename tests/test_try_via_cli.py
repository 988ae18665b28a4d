"""``leadstreams try`` against the seed partner on a real local port, run as a
user would: a subprocess of the command line. Also ``--allow-loopback`` for local partners."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import FLOWS, json_handler, recording_app, seed_env, serve
from pytest_aiohttp import AiohttpServer
from resilience_helpers import closed_port_url
from try_cli_helpers import LEAD, SEED_SECRETS, cli, lead_file, try_flow
from yarl import URL

from streams.step.batch import batch_id_for

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
