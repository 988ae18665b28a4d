"""Issue #16, defects 3, 9 and 11, each with the input quoted in the issue, through whole flows
on real local aiohttp partners: a non-2xx answer in another format than the declared one is
judged by its status, a request body's render error says where the template is, and an open
circuit stops the leads already queued for the partner."""

from __future__ import annotations

import asyncio

from aiohttp import web
from pytest_aiohttp import AiohttpServer
from resilience_helpers import Answer, build_flow, harness, only_step, partner, score_step

from agents.process import wait_for
from streams.circuit import State
from streams.outcomes import Outcome

# --- #11: an open circuit stops the backlog -----------------------------------------------------

# The integration: every call fails, one attempt each, ten in flight.
BACKLOG_CIRCUIT = {"failure_rate": 0.5, "window": "30s", "min_calls": 20, "open_for": "60s"}
FAILING = Answer(500, {"message": "500"})


async def test_an_open_circuit_stops_the_leads_queued_behind_the_concurrency_slots(
    aiohttp_server: AiohttpServer,
) -> None:
    api = await partner(aiohttp_server, FAILING)
    integration = {"retry": {"attempts": 1}, "concurrency": 10, "circuit": BACKLOG_CIRCUIT}
    flow = build_flow(api.url, [score_step()], integration=integration)
    async with harness(flow) as h:
        results = await h.run_many({"id": f"L{n}", "email": f"l{n}@example.com"} for n in range(500))
        assert h.sample("leadstreams_circuit_transitions_total", integration="api", to="open") == 1
    # The 20th failure opens it; at most the 9 others in flight then still reach the partner.
    assert 20 <= api.requests < 20 + 10, api.requests
    reasons = [only_step(result).reason for result in results]
    assert reasons.count("HTTP 500: 500") == api.requests
    assert reasons.count("circuit open") == 500 - api.requests
    assert all(result.outcome is Outcome.ERROR for result in results)


async def test_queued_leads_take_the_fallback_chain_once_the_circuit_opens(
    aiohttp_server: AiohttpServer,
) -> None:
    api = await partner(aiohttp_server, FAILING)
    integration = {"retry": {"attempts": 1}, "concurrency": 10, "circuit": BACKLOG_CIRCUIT}
    flow = build_flow(api.url, [score_step(fallback=[{"default": {"score": 0}}])], integration=integration)
    async with harness(flow) as h:
        results = await h.run_many({"id": f"L{n}", "email": f"l{n}@example.com"} for n in range(100))
    assert api.requests < 30
    steps = [only_step(result) for result in results]
    assert sum(step.reason == "default values (circuit open)" for step in steps) == 100 - api.requests
    assert all((step.outcome, step.source) == (Outcome.SUCCESS, "default") for step in steps)


async def test_half_open_lets_only_its_probes_through_to_a_queue_of_leads(
    aiohttp_server: AiohttpServer,
) -> None:
    """Admitting at the moment of sending must not let the queue through in half-open."""
    release = asyncio.Event()
    calls: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(request.path)
        if len(calls) > 4:  # the probes hang until the end of the test
            await release.wait()
        return web.json_response({"message": "down"}, status=500)

    app = web.Application()
    app.router.add_get("/score", handler)
    server = await aiohttp_server(app)
    circuit = {**BACKLOG_CIRCUIT, "min_calls": 4, "open_for": "200ms", "half_open_probes": 2}
    integration = {"retry": {"attempts": 1}, "concurrency": 10, "circuit": circuit}
    flow = build_flow(str(server.make_url("")), [score_step()], integration=integration)
    async with harness(flow) as h:
        breaker = h.runner.guards.for_integration(flow.steps[0].integration).circuit
        assert breaker is not None
        await h.run_many({"id": f"L{n}", "email": "a@example.com"} for n in range(4))
        assert breaker.state is State.OPEN
        await wait_for(lambda: breaker.state is State.HALF_OPEN, 5.0, "the circuit to half-open")
        queued = [asyncio.create_task(h.run({"id": f"Q{n}", "email": "a@example.com"})) for n in range(30)]
        await wait_for(lambda: sum(task.done() for task in queued) == 28, 5.0, "28 leads refused")
        assert len(calls) == 4 + 2  # the two probes, nothing else
        refused = [only_step(task.result()).reason for task in queued if task.done()]
        assert refused == ["circuit open"] * 28
        release.set()
        probes = [only_step(result) for result in await asyncio.gather(*queued)]
    assert sum(step.reason == "HTTP 500: down" for step in probes) == 2
