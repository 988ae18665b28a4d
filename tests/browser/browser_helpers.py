"""What the web console's browser tests share: a two-step flow with secrets in its settings,
its real aiohttp partner (served from a thread: the tests drive a synchronous browser), the
leads, and the numbers /metrics says the page must show."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from examples.support.process import free_port
from streams.histogram_quantile import histogram_quantile

FLOW_NAME = "console-demo"
TOKEN_HEADER = "X-Leadstreams-Token"
OUTSIDE = "ZZ9 9ZZ"  # the postcode the scorer refuses, with the reason below
REFUSAL = f"postcode {OUTSIDE} is outside the coverage area"
SCORE_USER = "console-user"

FLOW = """\
version: 1
name: {name}
topics: {{input: {topic}.in, enriched: {topic}.out, errors: {topic}.errors}}
settings:
  verify_key: ${{VERIFY_API_KEY}}
  score_password: ${{SCORE_PASSWORD}}
integrations:
  verifier:
    base_url: ${{PARTNER_URL}}
    allow_loopback: true
    timeout: 5s
    auth: {{type: api_key, header: X-API-Key, value: "{{{{ settings.verify_key }}}}"}}
  scorer:
    base_url: ${{PARTNER_URL}}
    allow_loopback: true
    timeout: 5s
    auth: {{type: basic, username: {user}, password: "{{{{ settings.score_password }}}}"}}
steps:
  - name: verify
    integration: verifier
    request:
      method: POST
      url: /verify
      json: {{id: "{{{{ lead.id }}}}", email: "{{{{ lead.email }}}}"}}
    response: {{format: json}}
    map: {{verified: "{{{{ response.valid }}}}", verify_score: "{{{{ response.score }}}}"}}
  - name: score
    integration: scorer
    request:
      method: POST
      url: /score
      json: {{id: "{{{{ lead.id }}}}", postcode: "{{{{ lead.postcode }}}}"}}
    response: {{format: json}}
    price: {{value: "{{{{ response.price }}}}", default: 0}}
    reference: "{{{{ response.ref }}}}"
    map: {{tier: "{{{{ response.tier }}}}"}}
"""


@dataclass
class Setup:
    """The flow file, its environment (the secrets among it) and its topics."""

    workdir: Path
    partner_url: str
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    verify_key: str = field(default_factory=lambda: "vk-" + uuid.uuid4().hex)
    score_password: str = field(default_factory=lambda: "sp-" + uuid.uuid4().hex)

    @property
    def topic(self) -> str:
        return f"console.{self.suffix}"

    @property
    def env(self) -> dict[str, str]:
        return {"VERIFY_API_KEY": self.verify_key, "SCORE_PASSWORD": self.score_password,
                "PARTNER_URL": self.partner_url}  # fmt: skip

    @property
    def secrets(self) -> list[str]:
        """Every setting value that must never reach the page, and the basic auth header's form."""
        basic = base64.b64encode(f"{SCORE_USER}:{self.score_password}".encode()).decode()
        return [self.verify_key, self.score_password, basic]

    def write_flow(self) -> Path:
        path = self.workdir / f"{FLOW_NAME}.yaml"
        path.write_text(FLOW.format(name=FLOW_NAME, topic=self.topic, user=SCORE_USER))
        return path


def leads(count: int, suffix: str) -> list[dict[str, Any]]:
    """``count`` leads; every fifth one has the postcode the scorer refuses."""
    return [
        {"id": f"L{i:03d}-{suffix}", "email": f"lead{i}@mail.example",
         "postcode": OUTSIDE if i % 5 == 4 else f"AB{i} 1CD"}
        for i in range(count)
    ]  # fmt: skip


# ---- the partner ------------------------------------------------------------------------------
def partner_app(setup: Setup) -> web.Application:
    """/verify (API key) always succeeds, /score (basic auth) refuses one postcode with 422.
    Each answer waits a few milliseconds that depend on the lead, so percentiles differ."""
    basic = "Basic " + base64.b64encode(f"{SCORE_USER}:{setup.score_password}".encode()).decode()

    def delay(lead_id: str, spread_ms: int) -> float:
        return (int(hashlib.sha256(lead_id.encode()).hexdigest()[:4], 16) % spread_ms) / 1000

    async def verify(request: web.Request) -> web.Response:
        if request.headers.get("X-API-Key") != setup.verify_key:
            return web.json_response({"error": "invalid API key"}, status=401)
        body = await request.json()
        await asyncio.sleep(delay(str(body.get("id")), 60))
        return web.json_response({"valid": True, "score": len(str(body.get("email")))})

    async def score(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != basic:
            return web.json_response({"error": "bad credentials"}, status=401)
        body = await request.json()
        await asyncio.sleep(delay(str(body.get("id")), 25))
        if body.get("postcode") == OUTSIDE:
            return web.json_response({"reason": REFUSAL}, status=422)
        return web.json_response({"tier": "gold", "price": 1.25, "ref": "S-" + str(body.get("id"))})

    app = web.Application()
    app.router.add_post("/verify", verify)
    app.router.add_post("/score", score)
    return app


class ThreadServer:
    """A real aiohttp server on 127.0.0.1, run by an event loop in a thread of its own (the
    browser tests are synchronous; the partner must answer while they wait)."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="partner", daemon=True)
        self._runner = web.AppRunner(app)

    def __enter__(self) -> ThreadServer:
        self._thread.start()
        self._call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def _call(self, coroutine: Any) -> None:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        future.result(timeout=30)


# ---- HTTP from the test ------------------------------------------------------------------------
def http(url: str, token: str | None = None, body: Any = None) -> tuple[int, bytes]:
    """(status, body) of a GET, or of a JSON POST when ``body`` is given; errors are answers too."""
    headers = {TOKEN_HEADER: token} if token else {}
    data = None
    if body is not None:
        data = orjson.dumps(body)
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# ---- what /metrics says the Live tab must show ---------------------------------------------------
def expected_live(metrics_text: str, flow: str) -> dict[str, Any]:
    """Per step: requests, p50/p95/p99 (ms, Prometheus' histogram_quantile over the buckets of
    every outcome), outcomes, error % and retries; per flow: the leads by outcome."""
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    requests: dict[str, float] = defaultdict(float)
    errors: dict[str, float] = defaultdict(float)
    outcomes: dict[str, dict[str, float]] = defaultdict(dict)
    retries: dict[str, float] = defaultdict(float)
    lead_outcomes: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("flow") != flow:
                continue
            if sample.name == "leadstreams_request_duration_seconds_bucket":
                buckets[labels["step"]][float(labels["le"])] += sample.value
            elif sample.name == "leadstreams_request_duration_seconds_count":
                requests[labels["step"]] += sample.value
                if labels["outcome"] == "error":
                    errors[labels["step"]] += sample.value
            elif sample.name == "leadstreams_step_outcomes_total":
                outcomes[labels["step"]][labels["outcome"]] = sample.value
            elif sample.name == "leadstreams_retries_total":
                retries[labels["integration"]] += sample.value
            elif sample.name == "leadstreams_lead_duration_seconds_count":
                lead_outcomes[labels["outcome"]] = sample.value
    steps = {}
    for step, by_bound in buckets.items():
        pairs = sorted(by_bound.items())
        quantile = {q: histogram_quantile(q, pairs) for q in (0.5, 0.95, 0.99)}
        steps[step] = {
            "requests": int(requests[step]),
            "p50_ms": _ms(quantile[0.5]), "p95_ms": _ms(quantile[0.95]), "p99_ms": _ms(quantile[0.99]),
            "outcomes": {o: int(outcomes[step].get(o, 0)) for o in ("success", "failure", "error", "skip")},
            "error_pct": 100 * errors[step] / requests[step] if requests[step] else None,
        }  # fmt: skip
    return {"steps": steps, "leads": {o: int(n) for o, n in lead_outcomes.items()}, "retries": dict(retries)}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


# ---- waiting and reading the page -----------------------------------------------------------------
def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a condition until it holds (a process coming up); TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


# The Live tab as text, per flow: the flow line's fields and each step row's cells.
READ_LIVE = """
const flows = {};
for (const section of document.querySelectorAll('#live-flows section.flow')) {
  const flow = {line: {}, steps: {}};
  for (const b of section.querySelectorAll('.flow-line [data-field]')) {
    flow.line[b.dataset.field] = b.textContent;
  }
  for (const row of section.querySelectorAll('tr[data-step]')) {
    const cells = {alerts: [...row.querySelectorAll('.badge.alert')].map((a) => a.textContent)};
    for (const td of row.querySelectorAll('td[data-field]')) cells[td.dataset.field] = td.textContent;
    flow.steps[row.dataset.step] = cells;
  }
  flows[section.dataset.flow] = flow;
}
return flows;
"""


def live_mismatches(page: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """How the page's step rows differ from /metrics: ms to their one decimal (within half a
    unit of the last digit: JavaScript and Python round exact halves differently), counts
    exactly, error % to one decimal."""
    problems = []
    for step, want in expected["steps"].items():
        cells = page.get("steps", {}).get(step)
        if cells is None:
            problems.append(f"no row for step {step}")
            continue
        shown = {"requests": str(want["requests"]),
                 **{f"outcomes.{o}": str(n) for o, n in want["outcomes"].items()}}  # fmt: skip
        for name, text in shown.items():
            if cells.get(name) != text:
                problems.append(f"{step} {name}: page {cells.get(name)!r}, /metrics {text!r}")
        for name in ("p50_ms", "p95_ms", "p99_ms", "error_pct"):
            if not _close(cells.get(name), want[name]):
                problems.append(f"{step} {name}: page {cells.get(name)!r}, /metrics {want[name]!r}")
    return problems


def _close(text: str | None, value: float | None) -> bool:
    if value is None:
        return text == "–"
    try:
        return abs(float(text or "") - value) <= 0.05 + 1e-9 and text == f"{float(text or ''):.1f}"
    except ValueError:
        return False


def assert_no_secrets(loaded: list[Any], origin: str, secrets: list[str], token: str) -> set[str]:
    """No response from ``origin`` holds a secret (body or header); the token is in no URL.
    Every response must still have its body. Returns the paths that were searched."""
    mine = [item for item in loaded if item.url.startswith(origin + "/")]
    assert mine, f"the page loaded nothing from {origin}"
    for item in mine:
        assert token not in item.url, f"the token is in a URL the page fetched: {item.url}"
        assert item.body is not None, f"the body of {item.method} {item.url} was not kept to search"
        text = item.body + "\n" + "\n".join(f"{k}: {v}" for k, v in item.headers.items())
        for secret in secrets:
            assert secret not in text, f"a setting's value reached the page in {item.method} {item.url}"
    return {urllib.parse.urlsplit(item.url).path for item in mine}
