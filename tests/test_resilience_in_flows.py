"""The resilience layer through whole flows on real local aiohttp servers: the status policy's inline
retries (5xx, 429 with Retry-After, timeouts, refused connections), statuses that are answers (outcome
rules, SOAP Faults), the circuit breaker, the SSRF guard, ``${ENV}`` typing, and the metrics they move.
The fallback chain is in test_fallbacks_in_flows.py, the rate limit in test_rate_limit_in_flows.py."""

from __future__ import annotations

from typing import Any

import pytest
from pytest_aiohttp import AiohttpServer
from resilience_helpers import (
    LEAD,
    OK,
    SCORE_STEP,
    SOAP_FAULT,
    Answer,
    answer,
    build_flow,
    closed_port_url,
    harness,
    only_step,
    partner,
    score_step,
    stalled_partner,
)
from yarl import URL

from streams.outcomes import Outcome

DEFAULT_FALLBACK: list[dict[str, Any]] = [{"default": {"score": 0}}]

# --- statuses -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_server_errors_are_retried_up_to_attempts_then_error(
    aiohttp_server: AiohttpServer, status: int
) -> None:
    api = await partner(aiohttp_server, answer(status, {"message": "partner broke"}))
    async with harness(build_flow(api.url, [SCORE_STEP])) as h:
        result = await h.run()
        step = only_step(result)
        assert api.requests == 3 and step.attempts == 3
        assert (step.outcome, step.reason) == (
            Outcome.ERROR,
            f"HTTP {status}: partner broke (after 3 attempts)",
        )
        assert step.http_status == status and result.outcome is Outcome.ERROR
        assert h.sample("leadstreams_retries_total", integration="api", reason=str(status)) == 2
        assert h.sample("leadstreams_http_responses_total", integration="api", status_class="5xx") == 3


async def test_attempts_come_from_the_integration_retry_config(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server, answer(502, {"message": "bad gateway"}))
    flow = build_flow(api.url, [SCORE_STEP], integration={"retry": {"attempts": 5}})
    async with harness(flow) as h:
        step = only_step(await h.run())
    assert api.requests == 5 and step.reason == "HTTP 502: bad gateway (after 5 attempts)"


async def test_step_retry_overrides_the_integration(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server, answer(502, {"message": "bad gateway"}))
    flow = build_flow(api.url, [score_step(retry={"attempts": 1})], integration={"retry": {"attempts": 5}})
    async with harness(flow) as h:
        step = only_step(await h.run())
    assert api.requests == 1 and step.reason == "HTTP 502: bad gateway"


async def test_a_502_then_a_200_succeeds_on_the_second_attempt(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server, answer(502), Answer(payload={"score": 9}))
    async with harness(build_flow(api.url, [SCORE_STEP])) as h:
        result = await h.run()
        step = only_step(result)
        assert (step.outcome, step.attempts, step.http_status) == (Outcome.SUCCESS, 2, 200)
        assert step.source == "primary" and result.lead["score"] == 9
        assert h.sample("leadstreams_retries_total", integration="api", reason="502") == 1
        assert h.sample("leadstreams_http_responses_total", integration="api", status_class="2xx") == 1
        assert h.sample("leadstreams_http_responses_total", integration="api", status_class="5xx") == 1


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_client_errors_are_not_retried_nor_sent_to_the_chain(
    aiohttp_server: AiohttpServer, status: int
) -> None:
    api = await partner(aiohttp_server, answer(status, {"message": "invalid email"}))
    flow = build_flow(api.url, [score_step(fallback=DEFAULT_FALLBACK)])
    async with harness(flow) as h:
        result = await h.run()
        step = only_step(result)
        assert api.requests == 1 and step.attempts == 1
        assert (step.outcome, step.reason, step.source) == (
            Outcome.ERROR,
            f"HTTP {status}: invalid email",
            "primary",
        )
        assert "score" not in result.lead
        assert h.sample("leadstreams_retries_total", integration="api", reason=str(status)) == 0
        assert h.sample("leadstreams_fallbacks_total", step="score", source="default") == 0


async def test_401_with_an_api_key_is_not_retried_and_counts_as_an_auth_failure(
    aiohttp_server: AiohttpServer,
) -> None:
    api = await partner(aiohttp_server, answer(401, {"message": "bad key"}))
    flow = build_flow(
        api.url,
        [score_step(fallback=DEFAULT_FALLBACK)],
        integration={"auth": {"type": "api_key", "value": "wrong-key"}},
    )
    async with harness(flow) as h:
        step = only_step(await h.run())
        assert api.requests == 1 and step.attempts == 1
        assert (step.outcome, step.reason) == (Outcome.ERROR, "HTTP 401: bad key")
        assert h.sample("leadstreams_auth_failures_total", integration="api") == 1
        assert h.sample("leadstreams_http_responses_total", integration="api", status_class="4xx") == 1


async def test_429_waits_for_retry_after_before_retrying(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server, answer(429, Retry_After="1"), OK)
    async with harness(build_flow(api.url, [SCORE_STEP])) as h:
        step = only_step(await h.run())
        assert (step.outcome, step.attempts) == (Outcome.SUCCESS, 2)
        first, second = api.script.times
        assert second - first >= 0.9  # Retry-After, not the 1 ms backoff
        assert h.sample("leadstreams_retries_total", integration="api", reason="429") == 1


async def test_429_with_a_retry_after_beyond_max_inline_wait_goes_to_the_chain_at_once(
    aiohttp_server: AiohttpServer,
) -> None:
    api = await partner(aiohttp_server, answer(429, Retry_After="120"), OK)
    flow = build_flow(
        api.url, [score_step(fallback=DEFAULT_FALLBACK)], integration={"retry": {"max_inline_wait": "2s"}}
    )
    async with harness(flow) as h:
        result = await h.run()
    step = only_step(result)
    assert api.requests == 1 and step.duration_ms < 2000
    assert (step.outcome, step.source) == (Outcome.SUCCESS, "default") and result.lead["score"] == 0
    assert step.reason is not None and "HTTP 429" in step.reason and "too long to wait inline" in step.reason


async def test_429_with_a_long_retry_after_defers_with_that_delay(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server, answer(429, Retry_After="120"), OK)
    flow = build_flow(
        api.url, [SCORE_STEP], retry_topic=True, integration={"retry": {"max_inline_wait": "2s"}}
    )
    async with harness(flow) as h:
        result = await h.run()
    step = only_step(result)
    assert api.requests == 1
    assert step.outcome is Outcome.ERROR and step.reason is not None
    assert step.reason.startswith("retry later: HTTP 429")
    assert step.defer_after == 120 and result.defer_after == 120


async def test_503_goes_to_the_fallback_chain_at_once(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server, answer(503), OK)
    flow = build_flow(api.url, [score_step(fallback=DEFAULT_FALLBACK)])
    async with harness(flow) as h:
        result = await h.run()
        step = only_step(result)
        assert api.requests == 1 and step.attempts == 1
        assert (step.outcome, step.source, step.reason) == (
            Outcome.SUCCESS,
            "default",
            "default values (HTTP 503)",
        )
        assert h.sample("leadstreams_retries_total", integration="api", reason="503") == 0
        assert h.sample("leadstreams_fallbacks_total", step="score", source="default") == 1


async def test_503_without_a_chain_is_an_error_after_one_attempt(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server, answer(503, {"message": "maintenance"}))
    async with harness(build_flow(api.url, [SCORE_STEP])) as h:
        step = only_step(await h.run())
    assert api.requests == 1 and (step.outcome, step.reason) == (Outcome.ERROR, "HTTP 503: maintenance")


# --- statuses that are answers ------------------------------------------------------------------


async def test_an_outcome_rule_for_a_status_judges_it_instead_of_retrying(
    aiohttp_server: AiohttpServer,
) -> None:
    api = await partner(aiohttp_server, answer(500, {"message": "duplicate lead"}))
    rules = [{"status": [500], "outcome": "failure", "reason": "{{ response.message }}"}]
    flow = build_flow(api.url, [score_step(response={"outcome": rules}, fallback=DEFAULT_FALLBACK)])
    async with harness(flow) as h:
        step = only_step(await h.run())
        assert api.requests == 1
        assert (step.outcome, step.reason, step.source) == (Outcome.FAILURE, "duplicate lead", "primary")
        assert h.sample("leadstreams_retries_total", integration="api", reason="500") == 0


async def test_a_soap_fault_with_http_500_is_judged_once(aiohttp_server: AiohttpServer) -> None:
    fault = Answer(500, body=SOAP_FAULT, content_type="text/xml")
    api = await partner(aiohttp_server, fault)
    step_spec = {"name": "soap", "request": {"method": "POST", "url": "/soap", "xml": "<Ping/>"}}
    async with harness(build_flow(api.url, [step_spec])) as h:
        step = only_step(await h.run())
    assert api.requests == 1 and step.attempts == 1 and step.http_status == 500
    assert (step.outcome, step.reason) == (Outcome.ERROR, "SOAP Fault: Lead rejected")


# --- timeouts and connection errors -------------------------------------------------------------


async def test_a_timeout_is_retried_once_then_an_error(aiohttp_server: AiohttpServer) -> None:
    url, received = await stalled_partner(aiohttp_server)
    flow = build_flow(url, [SCORE_STEP], integration={"timeout": "0.2s"})
    async with harness(flow) as h:
        step = only_step(await h.run())
        assert len(received) == 2 and step.attempts == 2
        assert (step.outcome, step.reason) == (Outcome.ERROR, "timeout after 0.2s (after 2 attempts)")
        assert h.sample("leadstreams_timeouts_total", integration="api") == 2
        assert h.sample("leadstreams_retries_total", integration="api", reason="timeout") == 1


async def test_on_timeout_fallback_sends_once_then_walks_the_chain(aiohttp_server: AiohttpServer) -> None:
    url, received = await stalled_partner(aiohttp_server)
    flow = build_flow(
        url,
        [score_step(fallback=DEFAULT_FALLBACK)],
        integration={"timeout": "0.2s", "retry": {"on_timeout": "fallback"}},
    )
    async with harness(flow) as h:
        result = await h.run()
        step = only_step(result)
        assert len(received) == 1 and step.attempts == 1
        assert (step.outcome, step.source) == (Outcome.SUCCESS, "default")
        assert step.reason == "default values (timeout after 0.2s)" and result.lead["score"] == 0
        assert h.sample("leadstreams_timeouts_total", integration="api") == 1
        assert h.sample("leadstreams_retries_total", integration="api", reason="timeout") == 0


async def test_a_refused_connection_is_retried_then_an_error() -> None:
    url = closed_port_url()
    async with harness(build_flow(url, [SCORE_STEP])) as h:
        step = only_step(await h.run())
        assert step.attempts == 3 and step.outcome is Outcome.ERROR
        # The partner's address, not aiohttp's "Cannot connect to host ... ssl:default [...]".
        assert step.reason == f"connection refused by {URL(url).host}:{URL(url).port} (after 3 attempts)"
        assert h.sample("leadstreams_retries_total", integration="api", reason="connection") == 2


# --- circuit breaker ----------------------------------------------------------------------------

CIRCUIT = {"failure_rate": 0.5, "window": "30s", "min_calls": 4, "open_for": "30s"}


async def test_an_open_circuit_sends_nothing_and_goes_to_the_chain(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server, answer(500))
    flow = build_flow(
        api.url,
        [score_step(fallback=DEFAULT_FALLBACK)],
        integration={"circuit": CIRCUIT, "retry": {"attempts": 1}},
    )
    async with harness(flow) as h:
        assert h.sample("leadstreams_circuit_state", integration="api") == 0
        first = [await h.run({**LEAD, "id": f"L{n}"}) for n in range(4)]
        # Each lead's one 500 is a failed call; the fourth reaches min_calls at a 100% failure rate.
        assert api.requests == 4
        assert all(str(only_step(r).reason).startswith("default values (HTTP 500") for r in first)
        assert h.sample("leadstreams_circuit_state", integration="api") == 2
        assert h.sample("leadstreams_circuit_transitions_total", integration="api", to="open") == 1
        later = [await h.run({**LEAD, "id": f"M{n}"}) for n in range(3)]
        assert api.requests == 4  # nothing more reached the partner
        for result in later:
            step = only_step(result)
            assert (step.outcome, step.source, step.attempts) == (Outcome.SUCCESS, "default", 0)
            assert step.reason == "default values (circuit open)" and result.lead["score"] == 0


async def test_the_circuit_opens_between_retries_of_one_lead(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server, answer(502))
    flow = build_flow(api.url, [SCORE_STEP], integration={"circuit": CIRCUIT})
    async with harness(flow) as h:
        first = only_step(await h.run())  # three failures: below min_calls
        second = only_step(await h.run({**LEAD, "id": "L2"}))  # the fourth opens it
        third = only_step(await h.run({**LEAD, "id": "L3"}))
    assert api.requests == 4
    assert first.reason == "HTTP 502: status 502 (after 3 attempts)"
    assert (second.attempts, second.reason) == (1, "circuit open")
    assert (third.attempts, third.reason) == (0, "circuit open")


# --- SSRF guard ---------------------------------------------------------------------------------


async def test_loopback_is_refused_without_allow_loopback_and_not_retried(
    aiohttp_server: AiohttpServer,
) -> None:
    api = await partner(aiohttp_server, OK)
    flow = build_flow(api.url, [score_step(fallback=DEFAULT_FALLBACK)], integration={"allow_loopback": False})
    async with harness(flow) as h:
        step = only_step(await h.run())
        assert api.requests == 0 and step.outcome is Outcome.ERROR and step.reason is not None
        assert step.reason.startswith("address refused: 127.0.0.1 is a loopback address")
        assert "allow_loopback" in step.reason
        assert h.sample("leadstreams_retries_total", integration="api", reason="connection") == 0


async def test_allowed_networks_lets_loopback_through(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server, OK)
    flow = build_flow(
        api.url,
        [SCORE_STEP],
        integration={"allow_loopback": False, "allowed_networks": ["127.0.0.0/8"]},
    )
    async with harness(flow) as h:
        result = await h.run()
    assert api.requests == 1 and result.outcome is Outcome.SUCCESS and result.lead["score"] == 7


# --- ${ENV} typing ------------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "allowed"), [({}, False), ({"LOOPBACK": "true"}, True)])
async def test_allow_loopback_from_the_environment_is_a_boolean(
    aiohttp_server: AiohttpServer, env: dict[str, str], allowed: bool
) -> None:
    api = await partner(aiohttp_server, OK)
    flow = build_flow(api.url, [SCORE_STEP], env=env, integration={"allow_loopback": "${LOOPBACK:-false}"})
    assert flow.integrations["api"].allow_loopback is allowed
    async with harness(flow) as h:
        result = await h.run()
    assert api.requests == int(allowed)
    assert (result.outcome is Outcome.SUCCESS) is allowed


@pytest.mark.parametrize("key", ["0123", "123", "1.50", "true"])
async def test_settings_from_the_environment_stay_text(aiohttp_server: AiohttpServer, key: str) -> None:
    api = await partner(aiohttp_server, OK)
    step = score_step(request={"url": "/score", "headers": {"X-Key": "{{ settings.key }}"}})
    flow = build_flow(api.url, [step], env={"KEY": key}, settings={"key": "${KEY}"})
    assert flow.settings["key"] == key
    async with harness(flow) as h:
        result = await h.run()
    assert result.outcome is Outcome.SUCCESS
    assert [r.headers["X-Key"] for r in api.received] == [key]


async def test_a_numeric_secret_reaches_auth_as_text_through_settings(aiohttp_server: AiohttpServer) -> None:
    api = await partner(aiohttp_server, OK)
    flow = build_flow(
        api.url,
        [SCORE_STEP],
        env={"KEY": "123456"},
        settings={"key": "${KEY}"},
        integration={"auth": {"type": "api_key", "value": "{{ settings.key }}"}},
    )
    async with harness(flow) as h:
        assert (await h.run()).outcome is Outcome.SUCCESS
    assert [r.headers["X-API-Key"] for r in api.received] == ["123456"]


def test_zero_durations_in_the_circuit_and_delayed_retry_are_kept() -> None:
    flow = build_flow(
        "https://api.example",
        [SCORE_STEP],
        retry_topic=True,
        integration={"circuit": {**CIRCUIT, "open_for": "0s"}},
        delayed_retry={"first": "0s", "attempts": 2},
    )
    circuit = flow.integrations["api"].circuit
    assert circuit is not None and circuit.open_for == 0.0
    assert flow.delayed_retry is not None and flow.delayed_retry.first == 0.0
