"""The fallback chain through whole flows on real local aiohttp servers: ``url``, ``cache``,
``default``, ``skip`` and ``retry_later``, tried in order when the partner cannot answer."""

from __future__ import annotations

from typing import Any

import pytest
from pytest_aiohttp import AiohttpServer
from resilience_helpers import (
    LEAD,
    OK,
    SCORE_STEP,
    AgedCache,
    Answer,
    answer,
    build_flow,
    harness,
    only_step,
    partner,
    score_step,
)

from streams.cache import InMemoryCache
from streams.loader import parse_flow
from streams.metrics import CacheMetrics
from streams.outcomes import Outcome
from streams.problems import FlowFileError

DOWN = answer(503, {"message": "maintenance"})
BACKUP = Answer(payload={"score": 3})
SAME_REQUEST: dict[str, Any] = {**LEAD, "id": "L2"}  # another lead, the same request


# --- url ----------------------------------------------------------------------------------------


async def test_a_url_source_sends_the_request_elsewhere(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server, DOWN)
    backup = await partner(aiohttp_server, BACKUP)
    flow = build_flow(api.url, [score_step(fallback=[{"url": backup.url + "/alt"}])])
    async with harness(flow) as h:
        result = await h.run()
        step = only_step(result)
        assert (api.requests, backup.requests) == (1, 1)
        assert backup.received[0].path == "/alt" and backup.received[0].query["email"] == LEAD["email"]
        assert (step.outcome, step.source, step.http_status, step.attempts) == (
            Outcome.SUCCESS,
            "fallback_url_1",
            200,
            2,
        )
        assert result.lead["score"] == 3
        assert h.sample("leadstreams_fallbacks_total", step="score", source="fallback_url_1") == 1


async def test_a_url_source_that_cannot_answer_either_passes_to_the_next(
    aiohttp_server: AiohttpServer,
) -> None:
    api = await partner(aiohttp_server, DOWN)
    backup = await partner(aiohttp_server, DOWN)
    chain = [{"url": backup.url + "/alt"}, {"default": {"score": 0}}]
    async with harness(build_flow(api.url, [score_step(fallback=chain)])) as h:
        result = await h.run()
    step = only_step(result)
    assert (api.requests, backup.requests) == (1, 1)
    assert (step.outcome, step.source, result.lead["score"]) == (Outcome.SUCCESS, "default", 0)


async def test_a_url_source_rejecting_the_lead_is_its_answer(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server, DOWN)
    backup = await partner(aiohttp_server, answer(422, {"message": "invalid email"}))
    chain = [{"url": backup.url + "/alt"}, {"default": {"score": 0}}]
    async with harness(build_flow(api.url, [score_step(fallback=chain)])) as h:
        result = await h.run()
    step = only_step(result)
    assert (step.outcome, step.source, step.reason) == (
        Outcome.ERROR,
        "fallback_url_1",
        "HTTP 422: invalid email",
    )
    assert "score" not in result.lead


async def test_sources_are_tried_in_order_and_named_by_position(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server, DOWN)
    backup = await partner(aiohttp_server, BACKUP)
    chain = [{"cache": "1h"}, {"url": backup.url + "/alt"}, {"default": {"score": 0}}]
    async with harness(build_flow(api.url, [score_step(fallback=chain)])) as h:
        result = await h.run()
        assert only_step(result).source == "fallback_url_2" and result.lead["score"] == 3
        assert h.sample("leadstreams_cache_lookups_total", step="score", result="miss") == 1
        assert h.sample("leadstreams_fallbacks_total", step="score", source="default") == 0


async def test_an_open_circuit_still_lets_the_url_source_answer(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server, answer(500))
    backup = await partner(aiohttp_server, BACKUP)
    circuit = {"failure_rate": 0.5, "window": "30s", "min_calls": 2, "open_for": "30s"}
    flow = build_flow(
        api.url,
        [score_step(fallback=[{"url": backup.url + "/alt"}])],
        integration={"circuit": circuit, "retry": {"attempts": 1}},
    )
    async with harness(flow) as h:
        results = [await h.run({**LEAD, "id": f"L{n}"}) for n in range(4)]
        assert h.sample("leadstreams_circuit_state", integration="api") == 2
    assert api.requests == 2  # the circuit opened after two failures
    assert backup.requests == 4  # the backup is not behind the partner's circuit
    assert [only_step(r).source for r in results] == ["fallback_url_1"] * 4
    assert all(r.outcome is Outcome.SUCCESS and r.lead["score"] == 3 for r in results)


# --- cache --------------------------------------------------------------------------------------


async def test_the_cache_answers_with_the_last_good_response(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server, Answer(payload={"score": 8}))
    async with harness(build_flow(api.url, [score_step(fallback=[{"cache": "1h"}])])) as h:
        first = await h.run()
        assert only_step(first).source == "primary" and first.lead["score"] == 8
        api.script.then(DOWN)
        second = await h.run(SAME_REQUEST)
        step = only_step(second)
        assert api.requests == 2
        assert (step.outcome, step.source, step.http_status) == (Outcome.SUCCESS, "cache", 200)
        assert second.lead["score"] == 8
        assert h.sample("leadstreams_cache_lookups_total", step="score", result="hit") == 1
        assert h.sample("leadstreams_fallbacks_total", step="score", source="cache") == 1
        other = await h.run({"id": "L3", "email": "bob@example.com"})  # another request: a miss
        assert (only_step(other).outcome, only_step(other).reason) == (Outcome.ERROR, "HTTP 503: maintenance")
        assert h.sample("leadstreams_cache_lookups_total", step="score", result="miss") == 1


async def test_a_stale_cache_entry_is_not_used(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server, OK)
    cache = AgedCache()
    flow = build_flow(api.url, [score_step(fallback=[{"cache": "1h"}, {"default": {"score": 0}}])])
    async with harness(flow) as h:
        # Not through FlowRunner(cache=): runner.py's `cache or InMemoryCache()` drops an empty cache.
        h.runner.services.cache = cache
        assert (await h.run()).lead["score"] == 7
        api.script.then(DOWN)
        cache.age = 2 * 3600.0
        stale = await h.run(SAME_REQUEST)
        assert (only_step(stale).source, stale.lead["score"]) == ("default", 0)
        assert h.sample("leadstreams_cache_lookups_total", step="score", result="miss") == 1
        cache.age = 1800.0
        fresh = await h.run({**LEAD, "id": "L3"})
        assert (only_step(fresh).source, fresh.lead["score"]) == ("cache", 7)


async def test_a_rejected_lead_is_not_cached(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server, Answer(payload={"score": 1, "accepted": False}))
    rules = [{"when": "{{ not response.accepted }}", "outcome": "failure", "reason": "declined"}]
    flow = build_flow(api.url, [score_step(response={"outcome": rules}, fallback=[{"cache": "1h"}])])
    async with harness(flow) as h:
        assert (await h.run()).outcome is Outcome.FAILURE
        api.script.then(DOWN)
        later = only_step(await h.run(SAME_REQUEST))
    assert (later.outcome, later.source) == (Outcome.ERROR, None)


async def test_the_flow_s_cache_limit_holds_through_the_engine(aiohttp_server: AiohttpServer) -> None:
    """`cache: {max_entries: 2}` on the integration: a third answer pushes out the oldest stored,
    and the gauge says 2 for the integration."""
    api = await partner(aiohttp_server, OK)
    chain = [{"cache": "1h"}, {"default": {"score": 0}}]
    flow = build_flow(api.url, [score_step(fallback=chain)], integration={"cache": {"max_entries": 2}})
    async with harness(flow) as h:
        cache = InMemoryCache(policy=flow.cache_policy, observer=CacheMetrics(h.metrics, flow.name))
        h.runner.services.cache = cache  # what runner.py's default cache gets once it takes the policy
        for i, email in enumerate(["a@x.example", "b@x.example", "c@x.example"]):
            assert only_step(await h.run({"id": f"L{i}", "email": email})).source == "primary"
        api.script.then(DOWN)
        oldest = await h.run({"id": "again-a", "email": "a@x.example"})
        newest = await h.run({"id": "again-c", "email": "c@x.example"})
        assert (only_step(oldest).source, oldest.lead["score"]) == ("default", 0)
        assert (only_step(newest).source, newest.lead["score"]) == ("cache", 7)
        assert h.sample("leadstreams_cache_entries", integration="api") == 2
        assert h.sample("leadstreams_cache_evictions_total", integration="api", reason="full") == 1


# --- default, skip ------------------------------------------------------------------------------


async def test_default_fields_are_written_onto_the_lead(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server, DOWN)
    default = {"enrichment.score": 0, "enrichment.by": "fallback for {{ lead.email }}"}
    async with harness(build_flow(api.url, [score_step(fallback=[{"default": default}])])) as h:
        result = await h.run()
        step = only_step(result)
        assert (step.outcome, step.source) == (Outcome.SUCCESS, "default")
        assert step.reason == "default values (HTTP 503)" and result.outcome is Outcome.SUCCESS
        assert result.lead["enrichment"] == {"score": 0, "by": "fallback for ann@example.com"}
        assert h.sample("leadstreams_fallbacks_total", step="score", source="default") == 1


async def test_skip_skips_the_step_and_the_flow_goes_on(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server, DOWN)
    steps = [score_step(fallback=[{"skip": True}, {"default": {"score": 0}}]), {**SCORE_STEP, "name": "next"}]
    async with harness(build_flow(api.url, steps)) as h:
        result = await h.run()
    first, second = result.steps
    assert (first.outcome, first.source, first.reason) == (Outcome.SKIP, "skip", "skipped (HTTP 503)")
    assert second.outcome is Outcome.ERROR and api.requests == 2  # "next" ran (and met the 503)
    assert "score" not in result.lead


def test_a_skip_carries_a_note() -> None:
    flow = build_flow("https://api.example", [score_step(fallback=[{"skip": {"note": "partner down"}}])])
    [source] = flow.steps[0].fallback
    assert (source.kind, source.note) == ("skip", "partner down")
    assert (
        build_flow("https://api.example", [score_step(fallback=[{"skip": True}])]).steps[0].fallback[0].note
        is None
    )


@pytest.mark.parametrize(
    ("skip", "message"),
    [
        (False, "test.yaml:25:5: steps.0.fallback.0.skip: skip must be true (got false)"),
        ({"note": ""}, "test.yaml:26:7: steps.0.fallback.0.skip.note: must not be empty (got '')"),
        (
            {"not": "x"},
            "test.yaml:26:7: steps.0.fallback.0.skip.not: unknown key 'not' (did you mean 'note'?)",
        ),
    ],
)
def test_a_wrong_skip_is_named(skip: object, message: str) -> None:
    with pytest.raises(FlowFileError) as caught:
        build_flow("https://api.example", [score_step(fallback=[{"skip": skip}])])
    assert str(caught.value).splitlines() == [message]


async def test_a_skip_note_becomes_the_step_reason(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server, DOWN)
    steps = [score_step(fallback=[{"skip": {"note": "partner down"}}])]
    async with harness(build_flow(api.url, steps)) as h:
        result = await h.run()
    step = only_step(result)
    assert (step.outcome, step.source, step.reason) == (Outcome.SKIP, "skip", "partner down (HTTP 503)")


# --- retry_later and deferral -------------------------------------------------------------------


async def test_retry_later_defers_the_lead(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server, DOWN)
    steps = [score_step(fallback=[{"retry_later": True}]), {**SCORE_STEP, "name": "next"}]
    async with harness(build_flow(api.url, steps, retry_topic=True)) as h:
        result = await h.run()
    first, second = result.steps
    assert (first.outcome, first.reason) == (Outcome.ERROR, "retry later: HTTP 503")
    assert first.defer_after == 0.0 and result.defer_after == 0.0  # set: the retry topic's delay applies
    assert result.outcome is Outcome.ERROR and second.outcome is Outcome.SKIP
    assert api.requests == 1


async def test_an_exhausted_server_error_defers_when_the_flow_has_a_retry_topic(
    aiohttp_server: AiohttpServer,
) -> None:
    api = await partner(aiohttp_server, answer(502))
    async with harness(build_flow(api.url, [SCORE_STEP], retry_topic=True)) as h:
        result = await h.run()
    step = only_step(result)
    assert api.requests == 3 and step.attempts == 3
    assert step.outcome is Outcome.ERROR and str(step.reason).startswith("retry later: HTTP 502")
    assert step.defer_after == 0.0 and result.defer_after == 0.0


async def test_without_a_retry_topic_nothing_defers(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server, answer(502))
    async with harness(build_flow(api.url, [SCORE_STEP])) as h:
        result = await h.run()
    assert only_step(result).defer_after is None and result.defer_after is None


RETRY_LATER_WITHOUT_TOPIC = """\
version: 1
name: no-retry-topic
topics: {input: a, enriched: b, errors: c}
steps:
  - name: score
    request: {url: "https://api.example/score"}
    fallback:
      - default: {score: 0}
      - retry_later: true
"""


def test_retry_later_needs_a_retry_topic() -> None:
    with pytest.raises(FlowFileError) as caught:
        parse_flow(RETRY_LATER_WITHOUT_TOPIC, "late.yaml", {})
    assert "late.yaml:9:9: steps.0.fallback.1: retry_later needs topics.retry" in str(caught.value)


def test_a_step_without_an_integration_can_defer_too() -> None:
    text = RETRY_LATER_WITHOUT_TOPIC.replace("errors: c}", "errors: c, retry: r}").replace(
        "    fallback:", "    retry: {on_timeout: retry_topic}\n    fallback:"
    )
    step = parse_flow(text, "late.yaml", {}).steps[0]
    assert step.retry_config.retry_topic and step.retry_config.on_timeout == "retry_topic"
