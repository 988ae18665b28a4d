"""The test console in a real headless Chromium, served by `leadstreams console FLOW` (no
Kafka) against a real local partner: each step's card shows the masked request, the answer,
the mapped fields and the outcome; "Save as case" writes the cases file that `leadstreams
test` then passes; no setting's value reaches the page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from browser_helpers import (
    FLOW_NAME,
    OUTSIDE,
    REFUSAL,
    Setup,
    ThreadServer,
    assert_no_secrets,
    http,
    partner_app,
)
from browser_helpers import wait_until as wait_until_true
from browser_session import Browser, Loaded
from selenium.webdriver.common.by import By

from examples.support.process import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ConsoleOnly:
    url: str
    token: str
    setup: Setup
    flow: Path
    partner_url: str

    @property
    def page(self) -> str:
        return f"{self.url}/#token={self.token}"


@pytest.fixture(scope="module")
def console_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleOnly]:
    """`leadstreams console FLOW` and the flow's partner."""
    workdir = tmp_path_factory.mktemp("console-only")
    setup = Setup(workdir, partner_url="")
    with ThreadServer(partner_app(setup)) as partner:
        setup.partner_url = partner.url
        flow = setup.write_flow()
        token = "console-" + uuid.uuid4().hex
        port = free_port()
        env = {**os.environ, **setup.env, "LEADSTREAMS_CONSOLE_TOKEN": token}
        log_path = workdir / "console.log"
        command = [sys.executable, "-m", "agents.cli", "console", str(flow), "--port", str(port)]
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_true(lambda: process.poll() is not None or _answers(url), 30, "leadstreams console")
            assert process.poll() is None, log_path.read_text()
            yield ConsoleOnly(url, token, setup, flow, partner.url)
        finally:
            process.terminate()
            process.wait(timeout=20)


def _answers(url: str) -> bool:
    try:
        return http(url + "/")[0] == 200
    except (urllib.error.URLError, ConnectionError):
        return False


def test_console_mode_has_no_live_numbers(browser: Browser, console_only: ConsoleOnly) -> None:
    browser.open(console_only.page)
    browser.wait(lambda d: d.find_element(By.ID, "mode").text == "console", "the overview")
    for panel in ("panel-live", "panel-problems"):
        browser.driver.find_element(By.ID, panel.replace("panel", "tab")).click()
        notice = browser.driver.find_element(By.CSS_SELECTOR, f"#{panel} .no-worker")
        assert notice.is_displayed() and "no worker here" in notice.text
    assert http(console_only.url + "/console/api/stats", console_only.token)[0] == 404


def test_the_test_console_shows_each_step_and_saves_cases_that_pass(
    browser: Browser, console_only: ConsoleOnly
) -> None:
    browser.drain()
    browser.open(console_only.page)
    browser.wait(lambda d: d.find_element(By.ID, "mode").text == "console", "the overview")
    browser.driver.find_element(By.ID, "tab-test").click()
    form = browser.wait(lambda d: d.find_element(By.ID, "try-form").is_displayed(), "the test console's form")
    assert form
    assert browser.script("return document.getElementById('try-flow').value") == FLOW_NAME
    # No cases file yet: the lead to start from is a bare id.
    assert orjson.loads(browser.driver.find_element(By.ID, "try-lead").get_attribute("value")) == {
        "id": "test-1"
    }

    good = {"id": "B-1", "email": "ana@mail.example", "postcode": "AB1 2CD"}
    report = send(browser, good, previous=None)
    assert report["outcome"] == ["success", ""]
    verify, score = report["cards"]
    assert (verify["name"], verify["outcome"], score["name"], score["outcome"]) == (
        "verify", "success", "score", "success"
    )  # fmt: skip
    assert verify["request"].startswith(f"→ POST {console_only.partner_url}/verify")
    assert "X-API-Key: ***" in verify["headers"]
    assert "Authorization: Basic ***" in score["headers"]
    assert verify["response"].startswith("← 200 in ")
    assert verify["mapped"] == {"verified": "true", "verify_score": str(len(good["email"]))}
    assert score["mapped"] == {"tier": "gold"}
    assert (score["price"], score["reference"]) == ("1.25", "S-B-1")
    assert "HTTP 200" in score["facts"] and "1 request(s)" in score["facts"]
    assert orjson.loads(report["lead"]) == {**good, "verified": True, "verify_score": 16, "tier": "gold"}
    browser.screenshot("test-console")
    saved_good = save_case(browser, "a gold lead, from the browser")

    # Lead data is untrusted: markup in it is shown as text, never run.
    markup = '<img src="x" onerror="document.title=\'pwned\'">'
    refused = {"id": "B-2", "email": "bo@mail.example", "postcode": OUTSIDE, "note": markup}
    report = send(browser, refused, previous=report["run"])
    assert report["outcome"][0] == "error" and REFUSAL in report["outcome"][1]
    assert orjson.loads(report["lead"])["note"] == markup
    assert browser.script("return document.querySelectorAll('#try-result img').length") == 0
    assert browser.driver.title != "pwned"
    score = report["cards"][1]
    assert (score["outcome"], score["reason"]) == ("error", f" — HTTP 422: {REFUSAL}")
    assert score["response"].startswith("← 422 in ")
    saved_refused = save_case(browser)

    cases = console_only.flow.with_name(f"{FLOW_NAME}.cases.yaml")
    assert saved_good["path"] == saved_refused["path"] == str(cases), (saved_good, saved_refused)
    assert "a gold lead, from the browser" in saved_good["text"]
    test = subprocess.run(
        [sys.executable, "-m", "agents.cli", "test", str(console_only.flow)],
        env={**os.environ, **console_only.setup.env}, capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert test.returncode == 0, test.stdout + test.stderr
    assert "a gold lead, from the browser" in test.stdout, test.stdout

    # Every response of these runs (the masked requests, the partner's answers, the saves):
    # none holds a setting's value.
    loaded: list[Loaded] = []

    def saves_loaded(_: object) -> bool:  # Chrome's log may trail the page by a moment
        loaded.extend(browser.drain())
        return sum(item.url.endswith("/console/api/cases") for item in loaded) == 2

    browser.wait(saves_loaded, "the saves' responses in Chrome's log")
    setup = console_only.setup
    searched = assert_no_secrets(loaded, console_only.url, setup.secrets, console_only.token)
    assert {"/", "/console/api/overview", "/console/api/try", "/console/api/cases"} <= searched


READ_REPORT = """
const text = (node, css) => {
  const found = node.querySelector(css);
  return found ? found.textContent : null;
};
const cards = [...document.querySelectorAll('#try-result .card')].map((card) => ({
  name: card.dataset.step,
  outcome: text(card, 'header [data-field=outcome]'),
  reason: text(card, 'header [data-field=reason]'),
  facts: text(card, 'header .facts'),
  request: text(card, '[data-part=request] p'),
  headers: [...card.querySelectorAll('[data-part=request] .headers li')].map((li) => li.textContent),
  response: text(card, '[data-part=response] p'),
  mapped: Object.fromEntries([...card.querySelectorAll('[data-part=mapped] tr')].map(
    (tr) => [tr.dataset.mapped, tr.querySelector('td').textContent])),
  price: text(card, '[data-field=price]'),
  reference: text(card, '[data-field=reference]'),
}));
const outcome = document.getElementById('try-outcome');
return {
  run: document.querySelector('#try-result .cards').dataset.run,
  cards,
  outcome: [text(outcome, '[data-field=outcome]'), (text(outcome, '[data-field=reason]') || '').trim()],
  lead: document.getElementById('try-lead-result').textContent,
};
"""


def send(browser: Browser, lead: dict[str, Any], previous: str | None) -> dict[str, Any]:
    """Type the lead, press Send, wait for this run's report; what the page shows of it."""
    browser.script("document.getElementById('try-lead').value = arguments[0]", json.dumps(lead, indent=2))
    browser.driver.find_element(By.ID, "try-send").click()
    css = "#try-result .cards[data-run]"

    def reported(driver: Any) -> bool:
        cards = driver.find_elements(By.CSS_SELECTOR, css)
        return bool(cards) and cards[0].get_attribute("data-run") != previous

    browser.wait(reported, f"the report of lead {lead['id']}")
    report: dict[str, Any] = browser.script(READ_REPORT)
    return report


def save_case(browser: Browser, name: str | None = None) -> dict[str, str]:
    """Press "Save as case" (with a name, if given): the path the page says and the file's text."""
    field = browser.driver.find_element(By.ID, "case-name")
    field.clear()
    if name:
        field.send_keys(name)
    browser.driver.find_element(By.ID, "case-save").click()
    result = browser.wait(lambda d: d.find_element(By.CSS_SELECTOR, "#case-result.saved"), "the saved case")
    path = result.get_attribute("data-path")
    return {"path": path, "text": Path(path).read_text(), "shown": result.text}
