"""`leadstreams check` names the real problem (#16): each input below is the one quoted in
the issue, and each message is what a flow author can act on — never a schema dump, always
FILE:LINE:COLUMN, every problem of the file at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.loader import check_files, parse_flow
from streams.problems import FlowFileError, Problem

HEAD = """\
version: 1
name: t
topics: {input: a, enriched: b, errors: c}
integrations:
  p:
    base_url: https://partner.example
"""
# Line 7 onwards: an integration key, then the steps.
STEPS = """\
steps:
  - name: s
    integration: p
    request:
      url: /x
      json: {a: "{{ lead.a }}"}
"""


def problems_of(text: str, env: dict[str, str] | None = None) -> list[Problem]:
    with pytest.raises(FlowFileError) as caught:
        parse_flow(text, "flow.yaml", env or {})
    return caught.value.problems


def only(text: str, env: dict[str, str] | None = None) -> str:
    problems = problems_of(text, env)
    assert len(problems) == 1, problems
    return str(problems[0])


def auth(body: str) -> str:
    return HEAD + "    auth:\n" + body + STEPS


# Words of jsonschema's own messages: none may reach an author.
SCHEMA_DUMP = ("was expected", "is not valid under", "should not be valid", "anyOf", "{'", "^https?")

ISSUE_INPUTS = {
    "oauth2 without client_secret": (
        auth("      type: oauth2\n      token_url: https://partner.example/token\n      client_id: abc\n"),
        "flow.yaml:7:5: integrations.p.auth: oauth2 needs client_secret",
    ),
    "api_key with hedaer:": (
        auth("      type: api_key\n      value: k\n      hedaer: X-Key\n"),
        "flow.yaml:10:7: integrations.p.auth.hedaer: unknown key 'hedaer' (did you mean 'header'?)",
    ),
    "hmac with algorithm: md5": (
        auth("      type: hmac\n      secret: s\n      algorithm: md5\n"),
        "flow.yaml:10:7: integrations.p.auth.algorithm:"
        " algorithm must be one of sha256, sha1, sha512 (got 'md5')",
    ),
    "type: oauth": (
        auth(
            "      type: oauth\n      token_url: https://t.example/\n"
            "      client_id: a\n      client_secret: b\n"
        ),
        "flow.yaml:8:7: integrations.p.auth.type: unknown auth type 'oauth'"
        " (one of api_key, basic, bearer, oauth2, hmac, rotating)",
    ),
    "timeout: 2 seconds": (
        HEAD + "    timeout: 2 seconds\n" + STEPS,
        "flow.yaml:7:5: integrations.p.timeout: durations look like 200ms, 2s, 5m"
        " (a plain number is seconds, more than 0) (got '2 seconds')",
    ),
    "base_url without scheme": (
        HEAD.replace("https://partner.example", "partner.example") + STEPS,
        "flow.yaml:6:5: integrations.p.base_url:"
        " base_url must start with http:// or https:// (got 'partner.example')",
    ),
    "concurency": (
        HEAD + "    concurency: 5\n" + STEPS,
        "flow.yaml:7:5: integrations.p.concurency: unknown key 'concurency' (did you mean 'concurrency'?)",
    ),
    "json: with form:": (
        HEAD + STEPS + '      form: {b: "1"}\n',
        "flow.yaml:10:5: steps.0.request: a request has one body: json, form, text, xml or soap"
        " (this one has json, form)",
    ),
    "relative url on a step without an integration": (
        "version: 1\nname: t\ntopics: {input: a, enriched: b, errors: c}\n"
        "steps:\n  - name: s\n    request:\n      url: /v1/leads\n",
        "flow.yaml:7:7: steps.0.request.url: relative url '/v1/leads' needs an `integration:` with a base_url"
        " (or write the whole https://… URL)",
    ),
    "unset secret": (
        HEAD + '    headers: {X-Key: "${INTERNAL_API_KEY}"}\n' + STEPS,
        "flow.yaml:7:15: integrations.p.headers.X-Key:"
        " environment variable INTERNAL_API_KEY is not set: export it",
    ),
}


@pytest.mark.parametrize(("text", "expected"), ISSUE_INPUTS.values(), ids=ISSUE_INPUTS.keys())
def test_each_mistake_of_the_issue_gets_its_own_message(text: str, expected: str) -> None:
    message = only(text)
    assert message == expected
    assert not any(word in message for word in SCHEMA_DUMP), message


def test_a_duplicate_key_no_longer_hides_the_other_problems() -> None:
    text = """\
version: 1
name: t
name: t2
topics: {input: a, enriched: b, errors: c}
integrations:
  p:
    base_url: partner.example
    concurency: 5
    timeout: 2 seconds
    auth:
      type: hmac
      secret: s
      algorithm: md5
  q:
    auth:
      type: oauth
  r:
    auth:
      type: api_key
      value: k
      hedaer: X-Key
steps:
  - name: s
    integration: p
    timeout: 0s
    request:
      url: /x
      json: {a: "{{ lead.a "}
      form: {b: "1"}
"""
    problems = problems_of(text)
    assert [(p.line, p.column, p.path) for p in problems] == [
        (3, 1, "name"),
        (7, 5, "integrations.p.base_url"),
        (8, 5, "integrations.p.concurency"),
        (9, 5, "integrations.p.timeout"),
        (13, 7, "integrations.p.auth.algorithm"),
        (16, 7, "integrations.q.auth.type"),
        (21, 7, "integrations.r.auth.hedaer"),
        (25, 5, "steps.0.timeout"),
        (26, 5, "steps.0.request"),
        (28, 14, "steps.0.request.json.a"),
    ]
    assert problems[0].message == "duplicate key 'name' (first on line 2; this one wins)"
    assert not any(word in p.message for p in problems for word in SCHEMA_DUMP)


def test_every_bad_template_of_a_json_body_is_named_at_its_key() -> None:
    text = HEAD + STEPS.replace(
        '      json: {a: "{{ lead.a }}"}\n',
        '      json:\n        a: "{{ lead.a "\n        b: {c: "{{ lead.c | }}"}\n',
    )
    problems = problems_of(text)
    assert [(p.line, p.column, p.path) for p in problems] == [
        (13, 9, "steps.0.request.json.a"),
        (14, 13, "steps.0.request.json.b.c"),
    ]
    assert all(p.message.startswith("template syntax: ") for p in problems)


def test_a_missing_file_is_one_plain_line(tmp_path: Path) -> None:
    [], [problem] = check_files([tmp_path / "nope.yaml"], {})
    assert str(problem) == f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory"


def test_check_takes_several_files_and_env_files(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(HEAD + '    headers: {X-Key: "${INTERNAL_API_KEY}"}\n' + STEPS)
    bad.write_text(HEAD + "    concurency: 5\n" + STEPS)
    env_file = tmp_path / "prod.env"
    env_file.write_text(
        "# the deployment's values\nexport INTERNAL_API_KEY='k e y'  # quoted\nnot an assignment\n"
    )
    flows, found = check_files([good, bad], {}, [env_file])
    assert [flow.source_file for flow in flows] == [str(good)]
    assert [str(p) for p in found] == [
        f"{env_file}:3: (top): not NAME=value",
        f"{bad}:7:5: integrations.p.concurency: unknown key 'concurency' (did you mean 'concurrency'?)",
    ]
    assert check_files([good], {"INTERNAL_API_KEY": "x"})[1] == []
    [], [unset] = check_files([good], {})
    assert unset.message == "environment variable INTERNAL_API_KEY is not set: export it"


def test_a_value_of_a_wrong_type_is_said_in_yaml_words() -> None:
    message = only(HEAD + "    allow_loopback: maybe\n" + STEPS)
    assert message == "flow.yaml:7:5: integrations.p.allow_loopback: must be true or false (got 'maybe')"


def test_an_auth_without_type_says_so_once() -> None:
    message = only(auth("      token: abc\n"))
    assert message == "flow.yaml:7:5: integrations.p.auth: needs type"


# --- #16.8: a duration of 0 --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            HEAD + "    timeout: 0s\n" + STEPS,
            "flow.yaml:7:5: integrations.p.timeout: a timeout of 0 would switch the timeout off:"
            " leave `timeout:` out for 10s",
        ),
        (
            HEAD + STEPS.replace("    request:", "    timeout: 0s\n    request:"),
            "flow.yaml:10:5: steps.0.timeout: a timeout of 0 would switch the timeout off:"
            " leave `timeout:` out for the integration's",
        ),
        (
            HEAD + "    circuit: {window: 0ms}\n" + STEPS,
            "flow.yaml:7:15: integrations.p.circuit.window: a circuit's window must be longer than 0",
        ),
    ],
    ids=["integration timeout 0s", "step timeout 0s", "circuit window 0ms"],
)
def test_a_zero_that_would_mean_none_is_refused(text: str, expected: str) -> None:
    assert only(text) == expected


def test_a_number_zero_timeout_is_a_duration_problem_not_a_schema_dump() -> None:
    message = only(HEAD + "    timeout: 0\n" + STEPS)
    assert message == (
        "flow.yaml:7:5: integrations.p.timeout: durations look like 200ms, 2s, 5m"
        " (a plain number is seconds, more than 0) (got 0)"
    )


def test_absent_and_zero_are_told_apart() -> None:
    flow = parse_flow(HEAD + "    timeout: 500ms\n    pool: {keepalive: 0s}\n" + STEPS, "flow.yaml", {})
    [step] = flow.steps
    assert step.timeout is None and step.effective_timeout == 0.5  # absent: the integration's
    assert flow.integrations["p"].keepalive == 0.0  # 0 where it means something (no keep-alive) stays 0
