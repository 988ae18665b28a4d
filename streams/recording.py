"""``leadstreams try --record``: the real exchange of one lead, saved as a case ``leadstreams test`` replays.

What is recorded: every request's answer, per step and in the order sent (an OAuth2 token
request, then the call, then a retry...), as the saved-case format has it (``status``,
``headers``, ``json``/``xml``/``body``, ``timeout``, ``connection_error``), and an ``expect``
filled from what the run produced: the outcome and reason, the mapped fields, ``vars``, and
each step's outcome, reason, price and reference.

Secrets: the whole case goes through the flow's ``Masker`` (settings and the values learned at
run time: tokens, auth headers), so recorded answers hold ``***`` where a secret was. The replay
does not need them: its answers are canned and its requests are never compared, so a token of
``***`` works as well as the real one. ``settings:`` of a new cases file get placeholders for
secret values (``recorded-name``), and ``compare`` accepts ``***`` for any secret the replay
shows in clear.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.console import masked, masked_headers
from streams.flow import Integration
from streams.http_types import HttpResult, OutgoingRequest
from streams.masking import MASK, Masker
from streams.outcomes import FlowResult
from streams.partner_errors import describe
from streams.step.exchange import Exchange
from streams.transport import Transport

# Headers that describe the connection or the moment, not the answer; the replay computes its own.
_NOISE_HEADERS = {"date", "server", "content-length", "transfer-encoding", "connection", "keep-alive"}
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")


@dataclass
class RecordingTransport:
    """Sends through ``inner`` and keeps each answer (or failure) under the step that asked."""

    inner: Transport
    # Each step's ``response.format``: a body read as text is recorded as text, byte for byte.
    formats: Mapping[str, str] = field(default_factory=dict)
    answers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Steps with an answer the replay words differently (a connection error): their reasons
    # are not expected, only their outcomes.
    unworded: set[str] = field(default_factory=set)

    async def send(self, integration: Integration, request: OutgoingRequest, timeout: float) -> HttpResult:
        step = request.step
        try:
            result = await self.inner.send(integration, request, timeout)
        except TimeoutError:
            self._keep(step, {"timeout": True})
            raise
        except Exception as exc:  # recorded, then raised on unchanged
            self._keep(step, {"connection_error": describe(exc)})
            self.unworded.add(step)
            raise
        self._keep(step, answer_of(result, parsed_only=self.formats.get(step, "auto") in ("auto", "json")))
        return result

    async def close(self) -> None:
        await self.inner.close()

    def _keep(self, step: str, answer: dict[str, Any]) -> None:
        self.answers.setdefault(step, []).append(answer)


def answer_of(result: HttpResult, parsed_only: bool = True) -> dict[str, Any]:
    """A recorded answer the step reads as it read the real one: ``json:`` (readable, editable)
    for a JSON answer when only its parsed value counts (``parsed_only``: format auto or json) or
    when re-serialising it gives the same bytes; else ``xml:`` or ``body:``, byte for byte, with
    the partner's content type (a regex over the text sees the same text)."""
    answer: dict[str, Any] = {"status": result.status}
    headers = {k.lower(): v for k, v in result.headers.items() if k.lower() not in _NOISE_HEADERS}
    content_type = headers.get("content-type", "")
    body = result.body
    if "json" in content_type and _json_kept(body, exact=not parsed_only):
        answer["json"] = orjson.loads(body)
        if content_type.split(";")[0].strip() == "application/json":
            headers.pop("content-type")  # the replay's default
    elif "xml" in content_type:
        answer["xml"] = body.decode("utf-8", errors="replace")
    else:
        answer["body"] = body.decode("utf-8", errors="replace")
    if headers:
        answer["headers"] = headers
    return answer


def _json_kept(body: bytes, exact: bool) -> bool:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return not exact or orjson.dumps(value) == body


def recorded_case(
    name: str,
    lead: dict[str, Any],
    result: FlowResult,
    exchanges: Mapping[str, Exchange],
    recording: RecordingTransport,
    masker: Masker,
) -> dict[str, Any]:
    """The case as saved (secrets masked), ``expect`` from what this run produced."""
    unworded = recording.unworded
    expect: dict[str, Any] = {"outcome": result.outcome.value}
    if not any((result.reason or "").startswith(f"{step}: ") for step in unworded):
        expect["reason"] = result.reason
    fields = {name for exchange in exchanges.values() for name in (exchange.mapped or {})}
    if fields:
        expect["lead"] = {name: _dig(result.lead, name) for name in sorted(fields)}
    if result.vars:
        expect["vars"] = result.vars
    steps: dict[str, Any] = {}
    for step in result.steps:
        wanted: dict[str, Any] = {"outcome": step.outcome.value}
        if step.reason is not None and step.name not in unworded:
            wanted["reason"] = step.reason
        for key in ("price", "reference"):
            if getattr(step, key) is not None:
                wanted[key] = getattr(step, key)
        steps[step.name] = wanted["outcome"] if len(wanted) == 1 else wanted
    expect["steps"] = steps
    case: dict[str, Any] = {"name": name, "lead": lead}
    if recording.answers:
        case["responses"] = {
            step: [_masked_answer(answer, masker) for answer in answers]
            for step, answers in recording.answers.items()
        }
    case["expect"] = expect
    return masked(case, masker)


def _masked_answer(answer: dict[str, Any], masker: Masker) -> dict[str, Any]:
    if "headers" in answer:  # Set-Cookie and the like by name, before the JSON pass of ``masked``
        answer = {**answer, "headers": masked_headers(answer["headers"], masker)}
    return answer


def _dig(data: Any, dotted_name: str) -> Any:
    for part in dotted_name.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def referenced_variables(flow_data: Any) -> list[str]:
    """The ``${NAME}`` names a parsed flow document uses, in order of first use."""
    names: dict[str, None] = {}

    def walk(node: Any) -> None:
        if isinstance(node, str):
            names.update(dict.fromkeys(m.group(1) for m in _REFERENCE.finditer(node)))
        elif isinstance(node, dict):
            for item in node.values():
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(flow_data)
    return list(names)


def recorded_settings(names: list[str], env: Mapping[str, str], masker: Masker) -> dict[str, str]:
    """``settings:`` for a new cases file: each variable set in ``env``, a placeholder where the
    value is a secret (the replay needs some value, never the real one). A URL keeps a URL's
    shape, under the reserved ``.invalid`` domain, so a template building on it still renders."""
    settings = {}
    for index, name in enumerate(names, 1):
        value = env.get(name)
        if value is None:
            continue  # unset: the flow's default (or a missing variable the run reported)
        if masker.text(value) != value:
            slug = name.lower().replace("_", "-")
            url = value.startswith(("http://", "https://"))
            named = f"https://{slug}.invalid" if url else f"recorded-{slug}"
            # A stand-in holds no secret, its own or another's (PASSWORD=password, a client id
            # inside the client secret's name): then a numbered one, and "***" as the last resort.
            candidates = (named, f"recorded-{index}", f"stand-in-{index}")
            value = next((c for c in candidates if masker.text(c) == c), MASK)
        settings[name] = value
    return settings
