"""The status policy table, backoff with full jitter, Retry-After and the retry topic's delays."""

from __future__ import annotations

import random
from dataclasses import replace
from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.retry_policy import (
    Action,
    Decision,
    RetryConfig,
    backoff,
    decide,
    parse_retry_after,
    retry_topic_delay,
)

DEFAULT = RetryConfig()
WITH_TOPIC = RetryConfig(retry_topic=True)


def judge(attempt: int = 1, config: RetryConfig = DEFAULT, seed: int = 7, **event: object) -> Decision:
    return decide(config, attempt, rng=random.Random(seed), **event)  # type: ignore[arg-type]


# -- the table -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 204, 299, 301, 304])
def test_2xx_and_3xx_are_done(status: int) -> None:
    assert judge(status=status) == Decision(Action.DONE, reason=f"HTTP {status}")


@pytest.mark.parametrize("status", [400, 404, 422, 405, 409, 410, 501, 505])
def test_other_statuses_fail_without_retry(status: int) -> None:
    decision = judge(status=status)
    assert (decision.action, decision.auth_failure) == (Action.FAIL, False)
    assert judge(status=status, config=WITH_TOPIC).action is Action.FAIL


@pytest.mark.parametrize("status", [401, 403])
def test_auth_statuses_fail_and_count_an_auth_failure(status: int) -> None:
    decision = judge(status=status)
    assert decision == Decision(Action.FAIL, reason=f"HTTP {status}: auth failed", auth_failure=True)


def test_503_goes_to_the_fallback_chain_at_once() -> None:
    assert judge(status=503) == Decision(Action.FALLBACK, reason="HTTP 503")
    assert judge(status=503, config=WITH_TOPIC).action is Action.FALLBACK


TRANSIENT = [{"status": 500}, {"status": 502}, {"status": 504}, {"error": "connection"}]


@pytest.mark.parametrize("event", TRANSIENT)
def test_transient_errors_retry_until_attempts_then_fall_back(event: dict[str, object]) -> None:
    actions = [judge(attempt, **event).action for attempt in (1, 2, 3)]
    assert actions == [Action.RETRY, Action.RETRY, Action.FALLBACK]
    exhausted = judge(3, **event)
    assert exhausted.delay == 0.0
    assert exhausted.reason.endswith("after 3 attempts")


def test_exhausted_transient_errors_defer_when_there_is_a_retry_topic() -> None:
    assert judge(2, status=500, config=WITH_TOPIC).action is Action.RETRY
    assert judge(3, status=500, config=WITH_TOPIC).action is Action.DEFER
    assert judge(1, status=500, config=replace(WITH_TOPIC, attempts=1)).action is Action.DEFER


def test_429_waits_what_retry_after_says() -> None:
    assert judge(status=429, retry_after=3.0) == Decision(Action.RETRY, 3.0, "HTTP 429")
    assert judge(status=429, retry_after=0.0).delay == 0.0


def test_429_without_retry_after_backs_off() -> None:
    decision = judge(status=429)
    assert decision.action is Action.RETRY
    assert decision.delay == backoff(DEFAULT, 1, random.Random(7))


def test_429_that_asks_for_too_long_a_wait_is_not_waited_for_inline() -> None:
    too_long = judge(status=429, retry_after=60.0)
    assert (too_long.action, too_long.delay) == (Action.FALLBACK, 60.0)
    assert "too long to wait inline" in too_long.reason
    deferred = judge(status=429, retry_after=60.0, config=WITH_TOPIC)
    assert (deferred.action, deferred.delay) == (Action.DEFER, 60.0)  # the topic must not come back sooner
    assert judge(status=429, retry_after=10.0).action is Action.RETRY  # max_inline_wait itself is fine


def test_429_counts_against_attempts() -> None:
    assert judge(3, status=429, retry_after=1.0).action is Action.FALLBACK
    assert judge(3, status=429, retry_after=1.0, config=WITH_TOPIC) == Decision(
        Action.DEFER, 1.0, "HTTP 429 after 3 attempts"
    )


def test_long_backoff_also_defers() -> None:
    config = replace(WITH_TOPIC, attempts=10, backoff=1.0, max_backoff=60.0, max_inline_wait=2.0)
    actions = {judge(6, config=config, seed=seed, status=500).action for seed in range(50)}
    assert actions == {Action.RETRY, Action.DEFER}  # uniform in [0, 32]: mostly above 2 s, not always


def test_timeout_retries_once_then_falls_back() -> None:
    assert judge(1, error="timeout").action is Action.RETRY
    assert judge(2, error="timeout") == Decision(Action.FALLBACK, 0.0, "timeout after 2 attempts")
    assert judge(2, error="timeout", config=WITH_TOPIC).action is Action.DEFER
    assert judge(1, error="timeout", config=replace(DEFAULT, attempts=1)).action is Action.FALLBACK


def test_on_timeout_fallback_and_retry_topic_act_at_once() -> None:
    assert judge(error="timeout", config=replace(DEFAULT, on_timeout="fallback")).action is Action.FALLBACK
    topic = replace(WITH_TOPIC, on_timeout="retry_topic")
    assert judge(error="timeout", config=topic) == Decision(Action.DEFER, reason="timeout")


def test_statuses_are_configurable_per_step() -> None:
    step = replace(DEFAULT, retry_statuses=frozenset({500, 502, 504, 520}), fallback_statuses=frozenset())
    assert judge(status=520, config=step).action is Action.RETRY
    assert judge(status=503, config=step).action is Action.FAIL


@pytest.mark.parametrize(
    "options",
    [
        {"attempts": 0},
        {"timeout_attempts": 0},
        {"backoff": -1},
        {"on_timeout": "later"},
        {"on_timeout": "retry_topic"},  # without a retry topic
        {"fallback_statuses": frozenset({500})},  # also a retry status
    ],
)
def test_bad_configs_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RetryConfig(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "event", [{}, {"error": "reset"}, {"status": 500, "attempt": 0}], ids=["nothing", "unknown", "attempt 0"]
)
def test_decide_refuses_what_it_cannot_judge(event: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        judge(**event)  # type: ignore[arg-type]


# -- backoff -------------------------------------------------------------------------------------


@given(attempt=st.integers(1, 200), seed=st.integers(0, 2**32))
def test_jitter_stays_under_the_exponential_cap(attempt: int, seed: int) -> None:
    cap = min(DEFAULT.max_backoff, DEFAULT.backoff * 2.0 ** min(attempt - 1, 100))
    assert 0.0 <= backoff(DEFAULT, attempt, random.Random(seed)) <= cap


def test_jitter_is_full_and_seeded() -> None:
    draws = [backoff(DEFAULT, 3, random.Random(seed)) for seed in range(500)]  # cap 0.8 s
    assert min(draws) < 0.05 and max(draws) > 0.75  # the whole range [0, cap], not cap/2 + jitter
    assert judge(status=500, seed=1) == judge(status=500, seed=1)


# -- Retry-After, the retry topic ------------------------------------------------------------------

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        (formatdate(NOW + 90, usegmt=True), 90.0),
        (formatdate(NOW - 90, usegmt=True), 0.0),  # in the past: no wait
        ("Tue, 14 Nov 2023 22:14:20 -0000", 60.0),  # no zone promised: UTC (NOW is 22:13:20 UTC)
    ],
)
def test_parse_retry_after(value: str, seconds: float) -> None:
    assert parse_retry_after(value, NOW) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1e3", "Tue, 99 Foo 2023", "9" * 400])
def test_parse_retry_after_gives_none_for_junk(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


def test_retry_topic_delay_grows_to_its_cap() -> None:
    assert [retry_topic_delay(n) for n in range(1, 7)] == [5.0, 20.0, 80.0, 300.0, 300.0, 300.0]
    assert retry_topic_delay(10_000) == 300.0
    assert retry_topic_delay(2, first=1.0, factor=2.0, cap=10.0) == 2.0
    with pytest.raises(ValueError):
        retry_topic_delay(0)
