"""The web console on a worker, in a real headless Chromium: after the worker processed leads
on the real broker against a real partner, the Live tab shows what /metrics says, the failing
step's error % and the recent problems show the partner's reason, a problem's event opens, the
API wants the token, the test console is off without --console, and no setting's value ever
reaches the page."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from browser_helpers import (
    FLOW_NAME,
    READ_LIVE,
    REFUSAL,
    Setup,
    ThreadServer,
    assert_no_secrets,
    expected_live,
    http,
    leads,
    live_mismatches,
    partner_app,
)
from browser_session import Browser, Loaded
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By

from agents.kafka_io import Record, collect, ensure_topics, publish
from examples.support.process import WorkerProcess, free_port

pytestmark = pytest.mark.kafka
LEADS = 30
REFUSED = LEADS // 5  # every fifth lead's postcode is refused by the scorer


@dataclass
class OnWorker:
    url: str
    token: str
    setup: Setup
    worker: WorkerProcess
    leads: list[dict[str, Any]]

    @property
    def page(self) -> str:
        return f"{self.url}/#token={self.token}"


@pytest.fixture(scope="module")
def on_worker(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OnWorker]:
    """One worker (without --console) that has processed LEADS leads, every fifth refused."""
    workdir = tmp_path_factory.mktemp("console-worker")
    setup = Setup(workdir, partner_url="")
    with ThreadServer(partner_app(setup)) as partner:
        setup.partner_url = partner.url
        flow = setup.write_flow()
        topics = {kind: f"{setup.topic}.{kind}" for kind in ("in", "out", "errors")}
        asyncio.run(ensure_topics(kafka_bootstrap, topics.values(), partitions=3))
        token = "console-" + uuid.uuid4().hex
        port = free_port()
        group = f"console-{setup.suffix}"
        env = {**setup.env, "LEADSTREAMS_CONSOLE_TOKEN": token}
        args = ["--group-id", group, "--instance-id", f"{group}-0", "--partitions", "3"]
        worker = WorkerProcess(flow, kafka_bootstrap, port, workdir / "worker.log", env, args)
        worker.start()
        try:
            sent = leads(LEADS, setup.suffix)
            messages = [(lead["id"].encode(), orjson.dumps(lead)) for lead in sent]
            asyncio.run(publish(kafka_bootstrap, topics["in"], messages))

            def all_out(records: list[Record]) -> bool:
                return len(records) >= LEADS or not worker.alive

            outs = [topics["out"], topics["errors"]]
            outputs = asyncio.run(collect(kafka_bootstrap, outs, all_out, timeout=120))
            assert len(outputs) == LEADS, f"{len(outputs)} of {LEADS} leads out\n{worker.log_tail()}"
            yield OnWorker(f"http://127.0.0.1:{port}", token, setup, worker, sent)
        finally:
            worker.stop()


ROWS = "#live-flows tr[data-step]"


def open_live(browser: Browser, on_worker: OnWorker) -> None:
    browser.open(on_worker.page)
    browser.wait(lambda d: d.find_elements(By.CSS_SELECTOR, ROWS), "the Live tab's rows")


def test_live_tab_shows_what_metrics_says(browser: Browser, on_worker: OnWorker) -> None:
    open_live(browser, on_worker)
    assert "token" not in browser.driver.current_url, "the token stays in the address bar"
    assert browser.script("return location.hash") == ""

    status, metrics = http(on_worker.url + "/metrics")
    assert status == 200
    expected = expected_live(metrics.decode(), FLOW_NAME)
    # The run itself: every lead reached both steps; the scorer refused every fifth.
    assert expected["steps"]["verify"]["outcomes"]["success"] == LEADS
    assert expected["steps"]["score"]["outcomes"] == {"success": LEADS - REFUSED, "failure": 0,
                                                      "error": REFUSED, "skip": 0}  # fmt: skip
    assert expected["leads"] == {"success": LEADS - REFUSED, "error": REFUSED}

    last: dict[str, Any] = {}

    def matches(_: object) -> bool:
        last["page"] = browser.script(READ_LIVE).get(FLOW_NAME, {})
        last["problems"] = live_mismatches(last["page"], expected)
        return not last["problems"]

    try:
        browser.wait(matches, "the page's numbers to equal /metrics'", timeout=30)
    except TimeoutException:
        pytest.fail("the Live tab differs from /metrics:\n" + "\n".join(last["problems"]))
    page = last["page"]
    assert page["steps"]["score"]["error_pct"] == f"{100 * REFUSED / LEADS:.1f}"
    assert page["steps"]["verify"]["error_pct"] == "0.0"
    assert page["line"]["leads.success"] == str(LEADS - REFUSED)
    assert page["line"]["leads.error"] == str(REFUSED)
    # errors > 5 % holds for the scorer only: its row carries the red badge, the list names it.
    assert page["steps"]["score"]["alerts"], page["steps"]["score"]
    assert not page["steps"]["verify"]["alerts"], page["steps"]["verify"]
    listed = "return [...document.querySelectorAll('#alerts li')].map((li) => li.dataset.integration)"
    assert browser.script(listed) == ["scorer"]
    # The sparkline's points are 10 s apart: the first comes 10 s after the worker's first sample.
    spark = 'tr[data-step="verify"] .sparkline .rps'
    browser.wait(lambda d: d.find_elements(By.CSS_SELECTOR, spark), "the verify step's sparkline", timeout=30)
    browser.screenshot("live")


def test_recent_problems_show_the_reason_and_open_the_event(browser: Browser, on_worker: OnWorker) -> None:
    open_live(browser, on_worker)
    browser.driver.find_element(By.ID, "tab-problems").click()
    rows_css = "#problems-body tr[data-problem-id]"
    browser.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, rows_css)) == REFUSED, "the problems' rows")
    rows = browser.script(
        "return [...document.querySelectorAll(arguments[0])].map((row) => Object.fromEntries("
        "[...row.querySelectorAll('td[data-field]')].map((td) => [td.dataset.field, td.textContent])))",
        rows_css,
    )
    refused = {lead["id"] for lead in on_worker.leads if lead["postcode"].startswith("ZZ")}
    assert {row["lead_id"] for row in rows} == refused
    for row in rows:
        assert (row["flow"], row["step"], row["outcome"]) == (FLOW_NAME, "score", "error"), row
        assert REFUSAL in row["reason"], row
        assert row["where"].startswith(f"{on_worker.setup.topic}.in / "), row

    problem_id, lead_id = click_first_problem(browser)
    event_css = f'#problem-event[data-problem-id="{problem_id}"]'
    browser.wait(lambda d: d.find_elements(By.CSS_SELECTOR, event_css), "the problem's event")
    event = orjson.loads(browser.driver.find_element(By.CSS_SELECTOR, event_css).text)
    assert event["id"] == lead_id
    assert event["outcome"] == "error"
    assert REFUSAL in event["reason"]
    assert [step["name"] for step in event["steps"]] == ["verify", "score"]
    browser.screenshot("problems")


def test_the_api_wants_the_token_and_the_worker_refuses_the_test_console(
    browser: Browser, on_worker: OnWorker
) -> None:
    api = on_worker.url + "/console/api"
    for token in (None, "wrong-" + on_worker.token):
        status, body = http(api + "/overview", token)
        assert status == 401 and "token" in orjson.loads(body)["error"]
        assert http(api + "/stats", token)[0] == 401
    assert http(api + "/overview", on_worker.token)[0] == 200
    status, body = http(api + "/try", on_worker.token, {"flow": FLOW_NAME, "lead": on_worker.leads[0]})
    assert status == 403, body
    assert "--console" in orjson.loads(body)["error"]

    # The page without a token asks for it; given it, the numbers come.
    browser.open(on_worker.url + "/")
    browser.script("sessionStorage.clear()")
    browser.driver.refresh()
    box = browser.wait(
        lambda d: d.find_element(By.ID, "token-box").is_displayed() and d.find_element(By.ID, "token-box"),
        "the token field",
    )
    assert not browser.driver.find_elements(By.CSS_SELECTOR, ROWS)
    browser.screenshot("token")
    box.find_element(By.ID, "token-input").send_keys(on_worker.token)
    box.find_element(By.ID, "token-submit").click()
    browser.wait(lambda d: d.find_elements(By.CSS_SELECTOR, ROWS), "the Live tab's rows")
    assert not browser.driver.find_element(By.ID, "token-box").is_displayed()

    browser.driver.find_element(By.ID, "tab-test").click()
    off = browser.driver.find_element(By.ID, "test-off")
    assert off.is_displayed() and "--console" in off.text
    assert not browser.driver.find_element(By.ID, "try-form").is_displayed()


def test_no_setting_value_reaches_the_page(browser: Browser, on_worker: OnWorker) -> None:
    """Every response the page loads here (bodies from Chrome itself) is searched for the
    flow's setting values (api key, password, and the basic auth header made of them)."""
    browser.drain()
    open_live(browser, on_worker)
    for tab in ("tab-problems", "tab-test", "tab-live", "tab-problems"):
        browser.driver.find_element(By.ID, tab).click()
    first_row = "#problems-body tr[data-problem-id]"
    browser.wait(lambda d: d.find_element(By.CSS_SELECTOR, first_row), "a problem")
    problem_id, _ = click_first_problem(browser)
    event_css = f'#problem-event[data-problem-id="{problem_id}"]'
    browser.wait(lambda d: d.find_elements(By.CSS_SELECTOR, event_css), "the problem's event")
    api = "/console/api/"
    loaded: list[Loaded] = []

    def event_loaded(_: object) -> bool:  # Chrome's log may trail the page by a moment
        loaded.extend(browser.drain())
        return any(api + "problems/" in item.url for item in loaded)

    browser.wait(event_loaded, "the event's response in Chrome's log")
    searched = assert_no_secrets(loaded, on_worker.url, on_worker.setup.secrets, on_worker.token)
    assert {"/", "/console/static/app.js", api + "overview", api + "stats", api + "problems"} <= searched


def click_first_problem(browser: Browser) -> tuple[str, str]:
    """Click the newest problem's row: its id and lead id. In one script: the table is drawn
    anew every 2 s, so an element found in one call may be gone at the next."""
    found: list[str] = browser.script(
        "const row = document.querySelector('#problems-body tr[data-problem-id]');"
        "row.click();"
        "return [row.dataset.problemId, row.querySelector('td[data-field=lead_id]').textContent];"
    )
    return found[0], found[1]
