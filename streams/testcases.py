"""Saved test cases: a lead, recorded partner responses per step, the expected result.

``leadstreams test FLOW`` runs them offline through the real engine; only the
transport is replaced, by one that answers from the recordings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import aiohttp
import orjson
from jsonschema import Draft202012Validator

import schemas
from streams.flow import Flow, Integration
from streams.http_types import HttpResult, OutgoingRequest
from streams.loader import parse_flow
from streams.masking import Masker
from streams.outcomes import FlowResult
from streams.problems import FlowFileError, Problem, dotted
from streams.runner import FlowRunner
from streams.yaml_source import line_of, load_yaml, read_source


@dataclass
class Case:
    name: str
    lead: dict[str, Any]
    responses: dict[str, list[dict[str, Any]]]
    expect: dict[str, Any]


@dataclass
class CaseReport:
    name: str
    mismatches: list[str] = field(default_factory=list)
    result: FlowResult | None = None

    @property
    def passed(self) -> bool:
        return not self.mismatches


def cases_path_for(flow_path: str | os.PathLike[str]) -> FsPath:
    """``flows/x.yaml`` -> ``flows/x.cases.yaml``."""
    path = FsPath(flow_path)
    return path.with_name(f"{path.stem}.cases.yaml")


def load_cases(path: str | os.PathLike[str]) -> tuple[list[Case], dict[str, str]]:
    """The cases and the ``settings`` environment they run with."""
    filename = str(path)
    text = read_source(path)
    data, lines = load_yaml(text, filename)
    problems = [
        Problem(filename, line_of(lines, tuple(e.absolute_path)), dotted(tuple(e.absolute_path)), e.message)
        for e in Draft202012Validator(schemas.load("cases")).iter_errors(data)
    ]
    if problems:
        raise FlowFileError(problems)
    cases = [
        Case(
            name=raw["name"],
            lead=raw["lead"],
            responses={
                step: answers if isinstance(answers, list) else [answers]
                for step, answers in (raw.get("responses") or {}).items()
            },
            expect=raw["expect"],
        )
        for raw in data["cases"]
    ]
    return cases, {str(k): str(v) for k, v in (data.get("settings") or {}).items()}


class ReplayTransport:
    """Answers each step's requests, in order, from its recorded responses."""

    def __init__(self, responses: Mapping[str, list[dict[str, Any]]]) -> None:
        self._pending = {step: list(answers) for step, answers in responses.items()}
        self.sent: list[tuple[str, OutgoingRequest]] = []

    async def send(self, integration: Integration, request: OutgoingRequest, timeout: float) -> HttpResult:
        step = request.step
        self.sent.append((step, request))
        answers = self._pending.get(step)
        if not answers:
            raise aiohttp.ClientConnectionError(f"no recorded response left for step {step!r}")
        answer = answers.pop(0)
        if answer.get("timeout"):
            raise TimeoutError
        if "connection_error" in answer:
            raise aiohttp.ClientConnectionError(answer["connection_error"])
        return recorded_result(answer)

    async def close(self) -> None:
        return None


def recorded_result(answer: dict[str, Any]) -> HttpResult:
    headers = {k.lower(): v for k, v in (answer.get("headers") or {}).items()}
    if "json" in answer:
        body = orjson.dumps(answer["json"])
        headers.setdefault("content-type", "application/json")
    elif "xml" in answer:
        body = answer["xml"].encode()
        headers.setdefault("content-type", "application/xml")
    else:
        body = str(answer.get("body", "")).encode()
        headers.setdefault("content-type", "text/plain")
    return HttpResult(status=answer.get("status", 200), headers=headers, body=body, elapsed=0.0)


async def run_case(flow: Flow, case: Case) -> CaseReport:
    transport = ReplayTransport(case.responses)
    result = await FlowRunner(flow, transport).run(case.lead, str(case.lead.get("id", case.name)))
    return CaseReport(case.name, compare(case.expect, result, Masker(flow.secrets)), result)


def compare(expect: dict[str, Any], result: FlowResult, masker: Masker | None = None) -> list[str]:
    """Human-readable differences between the expectation and the result.

    With ``masker``, an expected value also matches the actual one with its secrets masked: a
    recorded case (``try --record``) holds ``***`` where the live run had a secret, and the replay
    has the cases file's stand-in for it in clear."""

    def same(wanted: Any, actual: Any) -> bool:
        if wanted == actual:
            return True
        return masker is not None and wanted == orjson.loads(masker.json_bytes(orjson.dumps(actual)))

    problems: list[str] = []
    if "outcome" in expect and expect["outcome"] != result.outcome.value:
        problems.append(
            f"outcome: expected {expect['outcome']}, got {result.outcome.value} ({result.reason})"
        )
    if "reason" in expect and not same(expect["reason"], result.reason):
        problems.append(f"reason: expected {expect['reason']!r}, got {result.reason!r}")
    for name, value in (expect.get("lead") or {}).items():
        actual = _dig(result.lead, name)
        if not same(value, actual):
            problems.append(f"lead.{name}: expected {value!r}, got {actual!r}")
    for name, value in (expect.get("vars") or {}).items():
        if not same(value, result.vars.get(name)):
            problems.append(f"vars.{name}: expected {value!r}, got {result.vars.get(name)!r}")
    steps = {step.name: step for step in result.steps}
    for name, wanted in (expect.get("steps") or {}).items():
        step = steps.get(name)
        if step is None:
            problems.append(f"steps.{name}: no such step in the result")
            continue
        wanted = {"outcome": wanted} if isinstance(wanted, str) else wanted
        actual = {
            "outcome": step.outcome.value,
            "reason": step.reason,
            "price": step.price,
            "reference": step.reference,
        }
        for key, value in wanted.items():
            if not same(value, actual[key]):
                problems.append(f"steps.{name}.{key}: expected {value!r}, got {actual[key]!r}")
    return problems


def _dig(data: Any, dotted_name: str) -> Any:
    for part in dotted_name.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def load_flow_for_cases(flow_path: str | os.PathLike[str], env: Mapping[str, str]) -> Flow:
    """The flow with the cases' settings; raises FlowFileError like ``load_flow``."""
    text = read_source(flow_path)
    return parse_flow(text, str(flow_path), {**os.environ, **env})


async def run_cases(
    flow_path: str | os.PathLike[str], cases_path: str | os.PathLike[str] | None = None
) -> list[CaseReport]:
    """Run every saved case of a flow. Each case gets a freshly loaded flow, so
    state such as a cached OAuth2 token never leaks from one case to the next."""
    cases, env = load_cases(cases_path or cases_path_for(flow_path))
    load_flow_for_cases(flow_path, env)  # report flow problems before running anything
    return [await run_case(load_flow_for_cases(flow_path, env), case) for case in cases]
