"""streams/step/judge.py without a network: what an answer means for the lead."""

from __future__ import annotations

from typing import Any

import orjson
from helpers import make_flow

from streams.flow import Step
from streams.http_types import HttpResult
from streams.outcomes import Outcome
from streams.retry_policy import Action, Decision
from streams.step.answer import Answer
from streams.step.judge import judge_response, judge_substitute, priced
from streams.step.partner import Call


def step(**extra: Any) -> Step:
    flow = make_flow("http://partner.invalid", [{"name": "score", "request": {"url": "/s"}, **extra}])
    return flow.steps[0]


def context() -> dict[str, Any]:
    return {"lead": {"id": "L1"}, "vars": {}, "settings": {}, "steps": {}}


def answer_of(status: int, body: dict[str, Any]) -> HttpResult:
    return HttpResult(status, {"content-type": "application/json"}, orjson.dumps(body), 0.01)


def unanswered(kind: str, **fields: Any) -> Answer:
    call = Call(answer_of(503, {"message": "busy"}), Decision(Action.FALLBACK, delay=30.0), 3, "HTTP 503")
    return Answer(call, kind, attempts=3, **fields)  # type: ignore[arg-type]


def test_a_success_maps_stores_prices_and_references() -> None:
    s = step(map={"score": "{{ response.score }}"}, store={"seen": "yes"},
             price="{{ response.price }}", reference="{{ response.ref }}")  # fmt: skip
    ctx = context()
    body = {"score": 7, "price": "2.5", "ref": "R9"}
    verdict = priced(s, ctx, judge_response(s, ctx, answer_of(200, body), body))
    assert (verdict.outcome, verdict.mapped, verdict.price, verdict.reference) == (
        Outcome.SUCCESS, {"score": 7}, 2.5, "R9")  # fmt: skip
    assert ctx["lead"]["score"] == 7 and ctx["vars"] == {"seen": "yes"}


def test_an_error_status_maps_nothing_and_says_the_partners_words() -> None:
    ctx = context()
    verdict = judge_response(step(map={"score": "1"}), ctx, answer_of(422, {"message": "bad email"}),
                             {"message": "bad email"})  # fmt: skip
    assert (verdict.outcome, verdict.reason, verdict.mapped) == (Outcome.ERROR, "HTTP 422: bad email", None)
    assert "score" not in ctx["lead"]


def test_substitutes_each_become_their_outcome() -> None:
    s, ctx = step(), context()
    default = judge_substitute(s, ctx, unanswered("default", source="default", fields={"tier": "C"}))
    assert (default.outcome, default.reason, ctx["lead"]["tier"]) == (
        Outcome.SUCCESS, "default values (HTTP 503)", "C")  # fmt: skip
    skip = judge_substitute(s, ctx, unanswered("skip", source="skip", note="partner down"))
    assert (skip.outcome, skip.reason) == (Outcome.SKIP, "partner down (HTTP 503)")
    defer = judge_substitute(s, ctx, unanswered("defer"))
    assert (defer.outcome, defer.reason, defer.defer_after) == (Outcome.ERROR, "retry later: HTTP 503", 30.0)
    nothing = judge_substitute(s, ctx, unanswered("none"))
    assert (nothing.outcome, nothing.reason) == (Outcome.ERROR, "HTTP 503: busy (after 3 attempts)")
    broken = judge_substitute(s, ctx, unanswered("broken", failure=(Outcome.ERROR, "template error: x")))
    assert (broken.outcome, broken.reason) == (Outcome.ERROR, "template error: x")


def test_an_error_is_not_priced() -> None:
    s, ctx = step(price="{{ response.price }}"), context()
    verdict = priced(s, ctx, judge_response(s, ctx, answer_of(500, {"price": 3}), {"price": 3}))
    assert (verdict.outcome, verdict.price) == (Outcome.ERROR, None)
