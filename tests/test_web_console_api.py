"""The web console's HTTP API (agents.web_console.routes) on a real aiohttp server, with a
real partner server behind the test console; no Kafka (the worker's page is tested in a
browser on a broker: tests/browser)."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from partner_api import create_partner_app
from prometheus_client import CollectorRegistry

from agents.web_console.backends import FileBackend, WorkerBackend
from agents.web_console.routes import ConsoleRoutes
from agents.web_console.token import TOKEN_ENV, TOKEN_HEADER, ConsoleToken, WeakToken
from streams.live_stats import LiveStats
from streams.loader import load_flow
from streams.recent_problems import RecentProblems
from streams.testcases import run_cases

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "console-secret-key-0042"
TOKEN = ConsoleToken("t" * 24, from_env=True)


@pytest.fixture
async def partner() -> Any:
    server = TestServer(create_partner_app(API_KEY))
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
def flow_file(tmp_path: Path) -> Path:
    target = tmp_path / "demo.yaml"
    shutil.copy(ROOT / "examples" / "flows" / "demo.yaml", target)
    return target


def env_for(partner: str) -> dict[str, str]:
    return {"INTERNAL_API_KEY": API_KEY, "PARTNER_URL": partner, "PARTNER_ALLOW_LOOPBACK": "true"}


async def client_for(routes: ConsoleRoutes) -> TestClient:
    app = web.Application()
    app.router.add_routes(routes.routes())
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def call(client: TestClient, method: str, path: str, body: Any = None, token: str | None = TOKEN.value
               ) -> tuple[int, Any, bytes]:  # fmt: skip
    headers = {TOKEN_HEADER: token} if token is not None else {}
    data = orjson.dumps(body) if body is not None and not isinstance(body, bytes) else body
    async with client.request(method, path, data=data, headers=headers) as response:
        raw = await response.read()
        parsed = orjson.loads(raw) if response.content_type == "application/json" else None
        return response.status, parsed, raw


async def test_every_api_needs_the_token_and_the_page_needs_none(flow_file: Path, partner: str) -> None:
    client = await client_for(ConsoleRoutes(FileBackend([str(flow_file)], env_for(partner)), TOKEN))
    try:
        for method, path in [("GET", "/console/api/overview"), ("GET", "/console/api/stats"),
                             ("GET", "/console/api/problems"), ("GET", "/console/api/problems/1"),
                             ("POST", "/console/api/try"), ("POST", "/console/api/cases")]:  # fmt: skip
            for token in (None, "wrong", TOKEN.value[:-1]):
                status, body, _ = await call(client, method, path, {}, token=token)
                assert status == 401, (method, path, token)
                assert TOKEN_HEADER in body["error"]
        status, _, page = await call(client, "GET", "/", token=None)
        assert status == 200 and b"<html" in page
        async with client.get("/") as response:
            policy = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        for name in ("app.js", "style.css"):
            status, _, text = await call(client, "GET", f"/console/static/{name}", token=None)
            assert status == 200 and text
        for name in ("index.htm", "..%2Froutes.py", "nothing.js"):
            status, _, _ = await call(client, "GET", f"/console/static/{name}", token=None)
            assert status == 404, name
    finally:
        await client.close()


async def test_the_test_console_runs_a_lead_and_saves_it_as_a_case(flow_file: Path, partner: str) -> None:
    client = await client_for(ConsoleRoutes(FileBackend([str(flow_file)], env_for(partner)), TOKEN))
    try:
        status, overview, raw = await call(client, "GET", "/console/api/overview")
        assert status == 200 and overview["mode"] == "console" and overview["test_console"] is True
        assert [flow["name"] for flow in overview["flows"]] == ["lead-validation"]
        assert overview["flows"][0]["steps"][0] == {"name": "check_blacklist", "integration": "internal",
                                                    "batch": False, "rate_limit": None}  # fmt: skip
        lead = {"id": "web-1", "email": "ana@spam.example", "phone": "555 123"}
        status, ran, raw_run = await call(client, "POST", "/console/api/try", {"flow": "lead-validation",
                                                                              "lead": lead})  # fmt: skip
        assert status == 200, ran
        report = ran["report"]
        assert report["outcome"] == "failure"
        assert report["reason"] == "check_blacklist: domain spam.example is blacklisted"
        step = report["steps"][0]
        assert step["mapped"] == {"blacklisted": True, "risk_score": 99}
        assert step["request"]["headers"]["X-API-Key"] == "***" and step["response"]["status"] == 200
        assert API_KEY.encode() not in raw_run and API_KEY.encode() not in raw
        save = {"run": ran["run"], "name": "spam"}
        status, saved, _ = await call(client, "POST", "/console/api/cases", save)
        assert status == 200 and saved["name"] == "spam"
        cases = Path(saved["path"])
        assert cases == flow_file.with_name("demo.cases.yaml") and API_KEY not in cases.read_text()
        [replayed] = await run_cases(str(flow_file), str(cases))  # the replay passes, offline
        assert replayed.passed, replayed.mismatches
        status, _, _ = await call(client, "GET", "/console/api/stats")
        assert status == 404  # no worker here
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 400, "not valid JSON"),
        ([1, 2], 400, "a JSON object"),
        ({"flow": "lead-validation", "lead": [1]}, 400, "lead must be a JSON object"),
        ({"flow": "nope", "lead": {}}, 404, "flows: lead-validation"),
    ],
)
async def test_bad_requests_get_a_clear_error(
    flow_file: Path, partner: str, body: Any, status: int, says: str
) -> None:
    client = await client_for(ConsoleRoutes(FileBackend([str(flow_file)], env_for(partner)), TOKEN))
    try:
        got, answer, _ = await call(client, "POST", "/console/api/try", body)
        assert got == status and says in answer["error"]
        got, answer, _ = await call(client, "POST", "/console/api/cases", {"run": "r99"})
        assert got == 404 and "send the lead again" in answer["error"]
    finally:
        await client.close()


async def test_a_rejected_file_shows_its_problems_with_settings_masked(tmp_path: Path, partner: str) -> None:
    text = (ROOT / "examples" / "flows" / "demo.yaml").read_text()
    from_env = tmp_path / "from-env.yaml"  # a problem quoting a ${NAME}'s value
    from_env.write_text(text.replace("timeout: 2s", "timeout: ${INTERNAL_API_KEY}"))
    literal = tmp_path / "literal.yaml"  # ... a setting written in the file, and a ${NAME:-default}
    settings = "internal_api_key: LiteralSecret12345\n  other: ${UNSET_NAME:-DefaultSecret678}"
    rendered = 'value: "{{ (settings.internal_api_key ~ settings.other) | b64decode }}"'  # its error quotes
    literal.write_text(text.replace("internal_api_key: ${INTERNAL_API_KEY}", settings)
                           .replace('value: "{{ settings.internal_api_key }}"', rendered))
    paths = [str(from_env), str(literal)]
    client = await client_for(ConsoleRoutes(FileBackend(paths, env_for(partner)), TOKEN))
    try:
        status, overview, raw = await call(client, "GET", "/console/api/overview")
        assert status == 200 and overview["flows"] == []
        assert [rejected["file"] for rejected in overview["rejected"]] == paths
        [env_problems, literal_problems] = [rejected["problems"] for rejected in overview["rejected"]]
        assert any("timeout" in p for p in env_problems) and any("b64decode" in p for p in literal_problems)
        for secret in (API_KEY, "LiteralSecret12345", "DefaultSecret678"):
            assert secret.encode() not in raw, secret
    finally:
        await client.close()


async def test_a_worker_without_console_refuses_the_test_console_but_shows_problems(flow_file: Path) -> None:
    flow = load_flow(flow_file, env_for("http://127.0.0.1:9"))
    problems = RecentProblems(keep=2)
    for n in range(3):
        event = {"id": f"L{n}", "flow": flow.name, "outcome": "error", "reason": f"r{n}",
                 "input": {"topic": "leads", "partition": 0, "offset": n},
                 "completed_at": "2026-12-01T00:00:00Z",
                 "steps": [{"name": "check_blacklist", "outcome": "error"}]}  # fmt: skip
        problems.add("error", orjson.dumps(event))
    problems.add("success", b"{}")  # (not a problem)
    backend = WorkerBackend(lambda: {str(flow_file): flow}, dict, LiveStats(CollectorRegistry()), problems,
                            {}, console_enabled=False)  # fmt: skip
    client = await client_for(ConsoleRoutes(backend, TOKEN))
    try:
        status, answer, _ = await call(client, "POST", "/console/api/try", {"flow": flow.name, "lead": {}})
        assert status == 403 and "--console" in answer["error"]
        status, overview, _ = await call(client, "GET", "/console/api/overview")
        assert overview["mode"] == "worker" and overview["test_console"] is False
        status, listed, _ = await call(client, "GET", "/console/api/problems")
        assert [(p["lead_id"], p["step"], p["offset"]) for p in listed["problems"]] == [
            ("L2", "check_blacklist", 2), ("L1", "check_blacklist", 1)]  # newest first, 2 kept
        newest = listed["problems"][0]["id"]
        status, event, _ = await call(client, "GET", f"/console/api/problems/{newest}")
        assert status == 200 and event["reason"] == "r2"
        status, answer, _ = await call(client, "GET", f"/console/api/problems/{newest - 2}")
        assert status == 404 and "no longer kept" in answer["error"]
        status, stats, _ = await call(client, "GET", "/console/api/stats")
        assert status == 200 and [f["name"] for f in stats["flows"]] == [flow.name]
    finally:
        await client.close()


def test_the_token_comes_from_the_environment_or_is_made_and_never_printed_when_given() -> None:
    made = ConsoleToken.from_environment({})
    assert len(made.value) >= 24 and made.value in made.page_url("127.0.0.1", 6066)
    given = ConsoleToken.from_environment({TOKEN_ENV: "x" * 20})
    assert given.value == "x" * 20 and given.value not in given.page_url("127.0.0.1", 6066)
    with pytest.raises(WeakToken, match="shorter than 16"):
        ConsoleToken.from_environment({TOKEN_ENV: "short"})
    assert not given.accepts(None) and not given.accepts("x" * 19) and given.accepts("x" * 20)
    assert not given.accepts("\udcff\udcfe")  # a header that was not UTF-8: refused, no error


def test_a_problem_event_too_large_to_keep_is_kept_as_its_summary() -> None:
    problems = RecentProblems(max_event_bytes=200)
    event = {"id": "big", "flow": "f", "outcome": "failure", "reason": "no",
             "lead": {"blob": "x" * 1000}, "input": {"topic": "t", "partition": 1, "offset": 7},
             "steps": [{"name": "s", "outcome": "failure"}]}  # fmt: skip
    problems.add("failure", orjson.dumps(event))
    [summary] = problems.newest_first()
    shown = (summary["lead_id"], summary["step"], summary["partition"], summary["offset"])
    assert shown == ("big", "s", 1, 7)
    kept = problems.event(summary["id"])
    assert kept is not None and "lead" not in kept and "read it on Kafka" in kept["note"]


async def test_the_numbers_are_read_seldom_until_the_page_asks_then_every_refresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """agents.web_console.on_worker.Sampling: idle, a read per IDLE_EVERY; a view wakes it."""
    from agents.web_console import on_worker
    from examples.support.process import wait_for

    monkeypatch.setattr(on_worker, "IDLE_EVERY", 60.0)
    monkeypatch.setattr(on_worker, "WATCHED_EVERY", 0.01)
    reads: list[float] = []

    class Counted(LiveStats):
        def sample(self) -> None:
            reads.append(time.monotonic())
            super().sample()

    sampling = on_worker.Sampling(Counted(CollectorRegistry()))
    task = asyncio.ensure_future(sampling.run_forever())
    try:
        await wait_for(lambda: len(reads) == 1, 5, "the first read, at once")
        sampling.viewed()  # without the wake-up the next read comes after IDLE_EVERY (60 s)
        await wait_for(lambda: len(reads) >= 5, 5, "reads at the page's pace")
    finally:
        task.cancel()
