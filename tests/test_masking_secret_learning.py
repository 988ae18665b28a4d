"""Issue #16.2: what auth schemes hold or receive, and what is computed from settings, is a
secret wherever it appears: logs (``--log-bodies``), the ``try`` report, events."""

from __future__ import annotations

import builtins
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from helpers import make_flow
from pytest_aiohttp import AiohttpServer

from agents.logs import mask_log_records
from streams import masking
from streams.auth.api_key import ApiKeyAuth
from streams.auth.basic import BasicAuth
from streams.console import run_report
from streams.flow import Flow
from streams.http_client import HttpClient
from streams.masking import LEARNED_CAPACITY, MASK, Masker, _learned, forget_learned, learn, learn_issued
from streams.runner import FlowRunner
from streams.step.exchange import Exchange

ACCESS_TOKEN = "cFvtQ2xLIVE-access-token-0123456789"  # the "cFvt…"
REFRESH_TOKEN = "rT-9f8e7d6c5b4a-refresh"
ID_TOKEN = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJjbGllbnQifQ."
STEP = {
    "name": "submit",
    "request": {"method": "POST", "url": "/v2/leads", "json": {"email": "{{ lead.email }}"}},
}


@pytest.fixture(autouse=True)
def nothing_learned() -> Iterator[None]:
    forget_learned()
    yield
    forget_learned()


@pytest.fixture
def masked_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The worker's logging with --loglevel debug --log-bodies: every record masked."""
    original = logging.getLogRecordFactory()
    caplog.set_level(logging.DEBUG)
    bodies = logging.getLogger("leadstreams.http.bodies")
    bodies.setLevel(logging.DEBUG)
    try:
        yield caplog
    finally:
        logging.setLogRecordFactory(original)
        bodies.setLevel(logging.NOTSET)


async def echo_partner(aiohttp_server: AiohttpServer) -> str:
    """A token endpoint, and an API that echoes the credentials it got (as careless partners do)."""

    async def token(request: web.Request) -> web.Response:
        return web.json_response(
            {"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 3600,
             "refresh_token": REFRESH_TOKEN, "id_token": ID_TOKEN}
        )  # fmt: skip

    async def api(request: web.Request) -> web.Response:
        seen = {name: request.headers.get(name, "") for name in ("Authorization", "X-Auth")}
        return web.json_response({"ok": True, "seen": seen, "url": str(request.url)})

    app = web.Application()
    app.router.add_post("/oauth/token", token)
    app.router.add_route("*", "/v2/{tail:.*}", api)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def run_and_report(flow: Flow) -> tuple[dict[str, Any], str]:
    """The `try` report of one lead and the text of every way it leaves (report, event bytes)."""
    client = HttpClient()
    exchanges: dict[str, Exchange] = {}
    try:
        result = await FlowRunner(flow, client).run({"id": "L1", "email": "a@example.com"}, "L1", exchanges)
    finally:
        await client.close()
    masker = Masker(flow.secrets)
    report = run_report(result, exchanges, masker, verbose=True)
    exchange = exchanges["submit"]
    assert exchange.response is not None
    event = masker.json_bytes(orjson.dumps({"response": exchange.response.body.decode()}))
    return report, orjson.dumps(report).decode() + event.decode()


async def test_log_bodies_do_not_show_oauth2_tokens(
    aiohttp_server: AiohttpServer, masked_logs: pytest.LogCaptureFixture
) -> None:
    base = await echo_partner(aiohttp_server)
    auth = {"type": "oauth2", "token_url": f"{base}/oauth/token", "client_id": "lead-app",
            "client_secret": "{{ settings.client_secret }}"}  # fmt: skip
    flow = make_flow(base, [STEP], integration={"auth": auth}, settings={"client_secret": "s3cr3t-client"})
    mask_log_records(Masker(flow.secrets))  # as `leadstreams worker` does
    report, shown = await run_and_report(flow)

    logged = "\n".join(record.getMessage() for record in masked_logs.records)
    assert "response body:" in logged and '"access_token":"***"' in logged.replace(" ", "")
    for secret in (ACCESS_TOKEN, REFRESH_TOKEN, ID_TOKEN, "s3cr3t-client"):
        assert secret not in logged
        assert secret not in shown  # the try report (the echo) and the event
    assert report["steps"][0]["response"]["body"].count(MASK) >= 1


async def test_a_setting_through_a_filter_is_masked_in_try(aiohttp_server: AiohttpServer) -> None:
    """`{{ settings.key | b64encode }}` in a header showed in clear in `try`."""
    base = await echo_partner(aiohttp_server)
    integration = {"headers": {"X-Auth": "{{ settings.key | b64encode }}"}}
    flow = make_flow(base, [STEP], integration=integration, settings={"key": "k3y-partner-77"})
    report, shown = await run_and_report(flow)
    encoded = "azN5LXBhcnRuZXItNzc="  # base64 of k3y-partner-77
    assert encoded not in shown
    assert report["steps"][0]["request"]["headers"]["X-Auth"] == MASK


@pytest.mark.parametrize(
    "auth",
    [
        {"type": "api_key", "value": "pk-live-not-a-setting", "query": "key"},  # lands in the URL
        {"type": "bearer", "token": "bt-live-not-a-setting"},
        {"type": "basic", "username": "lead-app", "password": "pw-live-not-a-setting"},
        {"type": "rotating", "tokens": ["rt-live-not-a-setting-1", "rt-live-not-a-setting-2"]},
    ],
)
async def test_credentials_written_in_the_auth_block_are_masked(
    aiohttp_server: AiohttpServer, auth: dict[str, Any]
) -> None:
    """Not settings (`value: ${PARTNER_KEY}` directly), and still secrets."""
    base = await echo_partner(aiohttp_server)
    flow = make_flow(base, [STEP], integration={"auth": auth})
    _, shown = await run_and_report(flow)
    assert "not-a-setting" not in shown
    assert "bGVhZC1hcHA6cHctbGl2ZS1ub3QtYS1zZXR0aW5n" not in shown  # lead-app:pw-live-… as Basic


def test_token_fields_are_masked_by_name_before_the_token_is_known() -> None:
    masker = Masker([])
    body = '{"access_token": "cFvtAAAA", "refresh_token":"r1", "id_token" : "x.y.z", "expires_in": 3600}'
    shown = '{"access_token": "***", "refresh_token":"***", "id_token" : "***", "expires_in": 3600}'
    assert masker.text(f"response body: {body}") == f"response body: {shown}"
    assert masker.text("access_token=cFvtAAAA&token_type=bearer") == "access_token=***&token_type=bearer"
    event = orjson.dumps({"body": body})
    assert b"cFvt" not in masker.json_bytes(event) and b"cFvt" not in (masker.raw_bytes(event) or b"")


def test_learned_values_reach_existing_maskers_short_ones_do_not() -> None:
    masker = Masker(["setting-value"])
    learn("tok-learned-later", "abc", None)
    assert masker.text("tok-learned-later abc setting-value") == f"{MASK} abc {MASK}"


def test_issued_tokens_are_bounded_and_a_reissued_one_is_the_newest() -> None:
    learn_issued("token-number-00000")
    for n in range(1, LEARNED_CAPACITY):
        learn_issued(f"token-number-{n:05d}")
    learn_issued("token-number-00000")  # issued again: now the newest, not the next to go
    learn_issued("token-number-99999")  # one over: the oldest other goes
    values = _learned.state[1]
    assert len(values) == LEARNED_CAPACITY
    assert "token-number-00000" in values and "token-number-00001" not in values


def test_credentials_stay_masked_however_many_tokens_are_issued() -> None:
    """Review #3: auth schemes learn their credentials once, when built; a worker refreshing
    OAuth2 tokens for days pushed them out of the bounded set, and they showed in clear."""
    masker = Masker([])
    ApiKeyAuth("pk-live-learned-at-start", query="key")
    BasicAuth("lead-app", "pw-live-learned-at-start")
    learn("derived-from-settings-1")  # a template over settings (streams.templates)
    for n in range(LEARNED_CAPACITY + 10):  # refreshes, each issuing a token
        learn_issued(f"access-token-{n:05d}")
    shown = masker.text("key=pk-live-learned-at-start pw-live-learned-at-start derived-from-settings-1")
    assert shown == f"key={MASK} {MASK} {MASK}"
    assert masker.text("access-token-00000") == "access-token-00000"  # expired long ago: dropped
    assert masker.text(f"access-token-{LEARNED_CAPACITY + 9:05d}") == MASK


def test_numbers_computed_from_settings_are_not_learned() -> None:
    """Review #1: `{{ settings.max * 100 }}` learned "500000", and from then on every event of
    every flow in the process had that number masked, unquoted ones too: invalid JSON."""
    from streams.templates import compile_value, environment

    context = {"settings": {"max": 5000, "ratio": 1.25, "region": "west"}, "lead": {"id": "L1"}}
    loose = environment(False)
    assert compile_value("{{ settings.max * 100 }}", loose).render(context) == 500000
    assert compile_value("{{ settings.ratio * 1000000 }}", loose).render(context) == 1250000.0
    assert compile_value("{{ settings.region | upper }}", loose).render(context) == "WEST"  # too short
    event = b'{"requested":500000,"zip":"500000","rate":1250000.0,"region":"WEST"}'
    assert Masker([]).json_bytes(event) == event
    assert _learned.state[1] == ()


def test_a_masker_refreshed_on_two_threads_at_once_ends_with_the_newest_needles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Review #10: the log record factory masks on Faust's consumer thread while the main thread
    masks events. A refresh stored its lists and its version one at a time, so one interleaving
    left the newest version with older lists: a secret learned then was never masked. The
    interleaving is forced here by pausing each thread inside the refresh (its `sorted` calls)."""
    masker = Masker([])
    learn("first-learned-secret")
    calls: Counter[str] = Counter()
    a_paused, b_paused, resume_a, resume_b = (threading.Event() for _ in range(4))

    def pausing_sorted(*args: Any, **kwargs: Any) -> Any:
        name = threading.current_thread().name
        calls[name] += 1
        if name == "A" and calls[name] == 1:  # A holds the first state, not yet stored
            a_paused.set()
            assert resume_a.wait(5)
        if name == "B" and calls[name] == 2:  # B, on the newer state, is part way through
            b_paused.set()
            assert resume_b.wait(5)
        return builtins.sorted(*args, **kwargs)

    monkeypatch.setattr(masking, "sorted", pausing_sorted, raising=False)
    a = threading.Thread(target=masker.text, args=("x",), name="A")
    a.start()
    assert a_paused.wait(5)
    learn("second-learned-secret")
    b = threading.Thread(target=masker.text, args=("x",), name="B")
    b.start()
    assert b_paused.wait(5)
    resume_a.set()
    a.join(5)
    resume_b.set()
    b.join(5)
    assert not a.is_alive() and not b.is_alive()
    monkeypatch.undo()
    assert masker.text("first-learned-secret second-learned-secret") == f"{MASK} {MASK}"


def test_settings_mixed_with_lead_data_are_not_learned_whole() -> None:
    from streams.templates import compile_value, environment

    context = {"settings": {"salt": "salt-value-1"}, "lead": {"id": "L1"}}
    compile_value("{{ lead.id }}-{{ settings.salt }}", environment(False)).render(context)
    compile_value("{{ lead.id ~ (settings.salt | upper) }}", environment(False)).render(context)
    assert _learned.state[1] == ("SALT-VALUE-1",)
