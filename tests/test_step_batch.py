"""Batch steps in the engine: tumbling windows, one request per window, per-lead results."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiohttp import web
from helpers import make_flow, recording_app, serve
from prometheus_client import CollectorRegistry
from pytest_aiohttp import AiohttpServer

from streams.flow import Flow
from streams.http_client import HttpClient
from streams.metrics import Metrics
from streams.outcomes import FlowResult, Outcome
from streams.problems import FlowFileError as FlowError
from streams.runner import FlowRunner
from streams.step.batch import batch_id_for


def batch_step(max_leads: int = 3, window: str = "200ms", **extra: Any) -> dict[str, Any]:
    return {
        "name": "submit",
        "batch": {"max_leads": max_leads, "window": window, "match": "lead_id"},
        "request": {
            "method": "POST",
            "url": "/batch",
            "json": {
                "batch_id": "{{ batch.id }}",
                "leads": {
                    "for_each": "{{ batch.leads }}",
                    "as": "lead",
                    "item": {"id": "{{ lead.id }}", "email": "{{ lead.email }}"},
                },
            },
        },
        "response": {
            "format": "json",
            "outcome": [
                {
                    "when": "{{ response.status == 'rejected' }}",
                    "outcome": "failure",
                    "reason": "{{ response.reason }}",
                },
            ],
        },
        "map": {"buyer_status": "{{ response.status }}", "in_batch": "{{ batch.size }}"},
        **extra,
    }


async def buyer(request: web.Request) -> web.StreamResponse:
    """Accepts each lead, rejects spam, leaves out ids ending in -nores."""
    leads = (await request.json())["leads"]
    results = [
        {"lead_id": lead["id"], "status": "rejected" if "spam" in lead["email"] else "accepted",
         "reason": "spam" if "spam" in lead["email"] else None}
        for lead in leads
        if not lead["id"].endswith("-nores")
    ]  # fmt: skip
    return web.json_response({"results": results})


def leads(*ids: str) -> list[dict[str, Any]]:
    return [{"id": lead_id, "email": f"{lead_id}@{'spam' if 'spam' in lead_id else 'mail'}.example"}
            for lead_id in ids]  # fmt: skip


async def run_all(
    runner: FlowRunner, batch: list[dict[str, Any]], groups: list[str] | None = None
) -> list[FlowResult]:
    async def one(lead: dict[str, Any], group: str) -> FlowResult:
        return await runner.run(lead, lead["id"], group=group)  # the worker passes the input partition

    return await asyncio.gather(
        *(one(lead, g) for lead, g in zip(batch, groups or [""] * len(batch), strict=True))
    )


async def windowed(flow: Flow, registry: CollectorRegistry | None = None) -> tuple[FlowRunner, HttpClient]:
    client = HttpClient()
    metrics = Metrics(registry) if registry is not None else None
    return FlowRunner(flow, client, metrics, batch_windows=True), client


def sent_ids(body: bytes) -> list[str]:
    return [lead["id"] for lead in orjson.loads(body)["leads"]]


async def test_windows_close_at_max_leads_and_the_rest_when_the_window_ends(
    aiohttp_server: AiohttpServer,
) -> None:
    app, received = recording_app(buyer)
    flow = make_flow(await serve(aiohttp_server, app), [batch_step(max_leads=3, window="300ms")])
    registry = CollectorRegistry()
    runner, client = await windowed(flow, registry)
    try:
        results = await run_all(runner, leads(*(f"L{i}" for i in range(7))))
    finally:
        await client.close()
    assert [len(sent_ids(r.body)) for r in received] == [3, 3, 1]
    assert sorted(i for r in received for i in sent_ids(r.body)) == sorted(f"L{i}" for i in range(7))
    for request in received:  # the id the template saw is the members' id
        body = orjson.loads(request.body)
        assert body["batch_id"] == batch_id_for("test-flow", "submit", sent_ids(request.body))
    assert all(r.outcome is Outcome.SUCCESS and r.lead["buyer_status"] == "accepted" for r in results)
    assert sorted(r.lead["in_batch"] for r in results) == [1, 3, 3, 3, 3, 3, 3]
    labels = {"flow": "test-flow", "step": "submit"}
    assert registry.get_sample_value("leadstreams_batch_window_leads_count", labels) == 3
    assert registry.get_sample_value("leadstreams_batch_window_leads_sum", labels) == 7
    # the lone lead's window closed by time, after about 0.3 s
    fill = registry.get_sample_value("leadstreams_batch_window_fill_seconds_bucket", {**labels, "le": "0.1"})
    assert fill == 2
    answered = {**labels, "integration": "api", "result": "answered"}
    assert registry.get_sample_value("leadstreams_batch_request_duration_seconds_count", answered) == 3


async def test_each_lead_takes_its_own_result(aiohttp_server: AiohttpServer) -> None:
    app, received = recording_app(buyer)
    flow = make_flow(await serve(aiohttp_server, app), [batch_step(max_leads=3)])
    runner, client = await windowed(flow)
    try:
        ok, spam, missing = await run_all(runner, leads("a", "b-spam", "c-nores"))
    finally:
        await client.close()
    assert len(received) == 1
    assert (ok.outcome, ok.lead["buyer_status"]) == (Outcome.SUCCESS, "accepted")
    assert (spam.outcome, spam.reason) == (Outcome.FAILURE, "submit: spam")
    assert spam.lead["buyer_status"] == "rejected"
    assert (missing.outcome, missing.reason) == (Outcome.ERROR, "submit: no result in batch response")
    assert "buyer_status" not in missing.lead


async def test_windows_never_mix_groups(aiohttp_server: AiohttpServer) -> None:
    app, received = recording_app(buyer)
    flow = make_flow(await serve(aiohttp_server, app), [batch_step(max_leads=10, window="100ms")])
    runner, client = await windowed(flow)
    try:
        await run_all(runner, leads("p0-a", "p1-a", "p0-b", "p1-b"), ["t:0", "t:1", "t:0", "t:1"])
    finally:
        await client.close()
    batches = sorted(sorted(sent_ids(r.body)) for r in received)
    assert batches == [["p0-a", "p0-b"], ["p1-a", "p1-b"]]


async def test_leads_whose_condition_is_false_do_not_join_a_window(aiohttp_server: AiohttpServer) -> None:
    app, received = recording_app(buyer)
    step = batch_step(max_leads=2, when="{{ lead.email }}")
    flow = make_flow(await serve(aiohttp_server, app), [step])
    runner, client = await windowed(flow)
    try:
        results = await run_all(runner, [*leads("a"), {"id": "no-email"}, *leads("b")])
    finally:
        await client.close()
    assert [sent_ids(r.body) for r in received] == [["a", "b"]]
    assert results[1].outcome is Outcome.SKIP


async def test_the_batch_request_is_retried_as_a_whole(aiohttp_server: AiohttpServer) -> None:
    calls = 0

    async def flaky(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        return web.json_response({"error": "busy"}, status=500) if calls == 1 else await buyer(request)

    app, received = recording_app(flaky)
    flow = make_flow(await serve(aiohttp_server, app), [batch_step(max_leads=2)],
                     integration={"retry": {"backoff": "10ms"}})  # fmt: skip
    runner, client = await windowed(flow)
    try:
        results = await run_all(runner, leads("a", "b"))
    finally:
        await client.close()
    assert len(received) == 2 and sent_ids(received[0].body) == sent_ids(received[1].body)
    assert all(r.outcome is Outcome.SUCCESS and r.steps[0].attempts == 2 for r in results)


async def test_a_batch_the_partner_cannot_take_gets_the_fallback_for_every_lead(
    aiohttp_server: AiohttpServer,
) -> None:
    app, received = recording_app(lambda request: asyncio.sleep(0, web.json_response({}, status=503)))
    step = batch_step(max_leads=2, fallback=[{"default": {"buyer_status": "queued"}}])
    flow = make_flow(await serve(aiohttp_server, app), [step])
    runner, client = await windowed(flow)
    try:
        results = await run_all(runner, leads("a", "b"))
    finally:
        await client.close()
    assert len(received) == 1
    for result in results:
        assert (result.outcome, result.lead["buyer_status"], result.steps[0].source) == (
            Outcome.SUCCESS, "queued", "default"
        )  # fmt: skip


async def test_an_answer_without_a_results_list_is_an_error_for_every_lead(
    aiohttp_server: AiohttpServer,
) -> None:
    app, _ = recording_app(lambda request: asyncio.sleep(0, web.json_response({"results": "ok"})))
    flow = make_flow(await serve(aiohttp_server, app), [batch_step(max_leads=2)])
    runner, client = await windowed(flow)
    try:
        results = await run_all(runner, leads("a", "b"))
    finally:
        await client.close()
    for result in results:
        assert result.outcome is Outcome.ERROR
        assert result.reason == "submit: batch response: `results` is not a list of results"


async def test_flush_sends_open_windows_at_once(aiohttp_server: AiohttpServer) -> None:
    app, received = recording_app(buyer)
    flow = make_flow(await serve(aiohttp_server, app), [batch_step(max_leads=100, window="10m")])
    registry = CollectorRegistry()
    runner, client = await windowed(flow, registry)
    open_windows = "leadstreams_batch_windows_open"
    try:
        running = asyncio.ensure_future(run_all(runner, leads("a", "b")))
        async with asyncio.timeout(5):
            while runner.batcher.pending < 2:
                await asyncio.sleep(0.01)
        assert received == []
        assert registry.get_sample_value(open_windows, {"flow": "test-flow", "step": "submit"}) == 1
        await runner.batcher.close_all()
        assert registry.get_sample_value(open_windows, {"flow": "test-flow", "step": "submit"}) == 0
        results = await asyncio.wait_for(running, 5)
    finally:
        await client.close()
    assert [sent_ids(r.body) for r in received] == [["a", "b"]]
    assert all(r.outcome is Outcome.SUCCESS for r in results)
    assert runner.batcher.pending == 0


def test_the_batch_id_depends_on_the_members_only() -> None:
    assert batch_id_for("f", "s", ["a", "b"]) == batch_id_for("f", "s", ["b", "a"])
    assert batch_id_for("f", "s", ["a", "b"]) != batch_id_for("f", "s", ["a", "b", "c"])
    assert batch_id_for("f", "s", ["a"]) != batch_id_for("f", "other", ["a"])


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ({"max_leads": 10, "window": "0s"}, "steps.0.batch.window: a batch window must be longer than 0"),
        ({"max_leads": 0, "window": "1s"}, "steps.0.batch.max_leads"),
        ({"window": "1s"}, "steps.0.batch: needs max_leads"),
    ],
)
def test_a_wrong_batch_is_a_clear_problem(batch: dict[str, Any], message: str) -> None:
    with pytest.raises(FlowError) as caught:
        make_flow("http://127.0.0.1:9", [{**batch_step(), "batch": batch}])
    assert message in str(caught.value)


def test_for_each_needs_a_name_for_its_element() -> None:
    step = batch_step()
    step["request"]["json"]["leads"]["as"] = "not a name"
    with pytest.raises(FlowError) as caught:
        make_flow("http://127.0.0.1:9", [step])
    assert "for_each: `as: not a name` must be a name" in str(caught.value)


def test_for_each_renders_one_item_per_element_and_refuses_a_non_list() -> None:
    from streams.templates import TemplateRenderError, compile_value, environment

    value = compile_value(
        {"for_each": "{{ xs }}", "item": {"n": "{{ item }}", "k": "fixed"}}, environment(False)
    )
    assert value.render({"xs": [1, 2]}) == [{"n": 1, "k": "fixed"}, {"n": 2, "k": "fixed"}]
    assert value.render({"xs": None}) == []
    with pytest.raises(TemplateRenderError, match="for_each needs a list, got str"):
        value.render({"xs": "abc"})


async def test_leads_without_an_id_are_matched_by_the_id_the_worker_gave_them(
    aiohttp_server: AiohttpServer,
) -> None:
    async def by_position(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        return web.json_response({"results": [{"lead_id": i, "status": "accepted"} for i in body["ids"]]})

    step = batch_step(max_leads=2)
    step["request"]["json"] = {"ids": "{{ batch.ids }}", "leads": "{{ batch.leads }}"}
    app, received = recording_app(by_position)
    flow = make_flow(await serve(aiohttp_server, app), [step])
    runner, client = await windowed(flow)
    try:  # no `id` field: the worker derives one from where the lead was read
        results = await asyncio.gather(
            runner.run({"email": "a@mail.example"}, "derived-1"),
            runner.run({"email": "b@mail.example"}, "derived-2"),
        )
    finally:
        await client.close()
    assert orjson.loads(received[0].body)["ids"] == ["derived-1", "derived-2"]
    assert all(r.outcome is Outcome.SUCCESS and r.lead["buyer_status"] == "accepted" for r in results)


@pytest.mark.parametrize("name", ["self", "loop", "none", "not a name", 3])
def test_for_each_refuses_names_jinja_keeps_for_itself(name: object) -> None:
    step = batch_step()
    step["request"]["json"]["leads"]["as"] = name
    with pytest.raises(FlowError, match="for_each: `as: "):
        make_flow("http://127.0.0.1:9", [step])


async def test_leads_of_a_window_do_not_share_fallback_values(aiohttp_server: AiohttpServer) -> None:
    async def down_for_batches(request: web.Request) -> web.StreamResponse:
        return web.json_response({}, status=503 if request.path == "/batch" else 200)

    app, _ = recording_app(down_for_batches)
    step = batch_step(max_leads=2, fallback=[{"default": {"buyer": {"status": "queued"}}}])
    step["map"] = {}
    flow = make_flow(await serve(aiohttp_server, app), [step, {
        "name": "mark", "request": {"url": "/mark"}, "when": "{{ lead.id == 'a' }}",
        "map": {"buyer.status": "marked"}, "continue_on": ["error"],
    }])  # fmt: skip
    runner, client = await windowed(flow)
    try:
        first, second = await run_all(runner, leads("a", "b"))
    finally:
        await client.close()
    assert first.lead["buyer"] == {"status": "marked"}
    assert second.lead["buyer"] == {"status": "queued"}  # lead a's later step did not write into b


async def test_a_leads_line_shows_only_the_status_of_an_answer_its_window_judged(
    aiohttp_server: AiohttpServer,
) -> None:
    """A substitute or a failed window shows no partner status (a later step's
    ``steps.submit.http_status`` reads it); an answer judged per lead shows its own."""
    for status, body, fallback, expected in (
        (503, {}, [{"default": {"buyer_status": "queued"}}], (Outcome.SUCCESS, None, "default")),
        (200, {"results": "ok"}, None, (Outcome.ERROR, None, None)),
        (200, {"results": [{"lead_id": "a", "status": "accepted"}]}, None, (Outcome.SUCCESS, 200, "primary")),
    ):
        answer = web.json_response(body, status=status)
        app, _ = recording_app(lambda request, answer=answer: asyncio.sleep(0, answer))
        extra = {"fallback": fallback} if fallback else {}
        flow = make_flow(await serve(aiohttp_server, app), [batch_step(max_leads=1, **extra)])
        runner, client = await windowed(flow)
        try:
            (result,) = await run_all(runner, leads("a"))
        finally:
            await client.close()
        line = result.steps[0]
        assert (result.outcome, line.http_status, line.source) == expected
