"""Flow files: the demo loads; every mistake is reported as FILE:LINE: dotted.path: message."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import DEMO_FLOW, demo_flow

from streams.auth.api_key import ApiKeyAuth
from streams.cache_index import CacheLimit, CachePolicy
from streams.flow import Flow
from streams.loader import load_flow, parse_flow
from streams.problems import FlowFileError, Problem
from streams.testcases import load_cases

HEAD = """\
version: 1
name: t
topics: {input: in, enriched: out, errors: err}
"""
# Line 4 onwards in every flow below.
GOOD_STEPS = """\
integrations:
  api:
    base_url: http://api.example
steps:
  - name: one
    integration: api
    request:
      url: /check
"""


def problems_of(text: str, env: dict[str, str] | None = None) -> list[Problem]:
    with pytest.raises(FlowFileError) as caught:
        parse_flow(text, "flow.yaml", env or {})
    return caught.value.problems


def only_problem(text: str, env: dict[str, str] | None = None) -> Problem:
    problems = problems_of(text, env)
    assert len(problems) == 1, problems
    return problems[0]


def test_demo_flow_loads() -> None:
    flow = load_flow(DEMO_FLOW, {"INTERNAL_API_KEY": "secret-key", "PARTNER_URL": "http://127.0.0.1:9"})
    assert isinstance(flow, Flow)
    assert flow.name == "lead-validation"
    assert flow.topics.input == "leads.incoming"
    internal = flow.integrations["internal"]
    assert internal.base_url == "http://127.0.0.1:9"
    assert internal.timeout == 2.0 and internal.concurrency == 50 and internal.pool_size == 50
    assert internal.auth == ApiKeyAuth(value="secret-key", header="X-API-Key")
    [step] = flow.steps
    assert step.name == "check_blacklist" and step.request.method == "POST"
    assert flow.secrets == ["secret-key"]


def test_demo_flow_via_helper_uses_given_url() -> None:
    assert demo_flow("http://10.0.0.1:1234").integrations["internal"].base_url == "http://10.0.0.1:1234"


def test_minimal_flow_loads_with_defaults() -> None:
    flow = parse_flow(HEAD + GOOD_STEPS, "flow.yaml", {})
    [step] = flow.steps
    assert step.request.method == "GET"
    assert step.effective_timeout == 10.0


def test_two_mistakes_are_both_reported_with_lines_and_paths() -> None:
    text = (
        HEAD
        + GOOD_STEPS
        + "    bogus: 1\n"
        + "  - name: two\n    request:\n      method: FETCH\n      url: https://x.example/\n"
    )
    problems = problems_of(text)
    assert [(p.line, p.path) for p in problems] == [
        (12, "steps.0.bogus"),
        (15, "steps.1.request.method"),
    ]
    assert "unknown key 'bogus'" in problems[0].message
    assert "FETCH" in problems[1].message
    assert str(problems[0]) == "flow.yaml:12:5: steps.0.bogus: unknown key 'bogus'"
    assert str(problems[1]).startswith("flow.yaml:15:7: steps.1.request.method: ")


def test_error_message_lists_every_problem() -> None:
    text = HEAD + GOOD_STEPS + "    bogus: 1\n    other: 2\n"
    with pytest.raises(FlowFileError) as caught:
        parse_flow(text, "flow.yaml", {})
    assert str(caught.value).splitlines() == [
        "flow.yaml:12:5: steps.0.bogus: unknown key 'bogus'",
        "flow.yaml:13:5: steps.0.other: unknown key 'other'",
    ]


def test_yaml_syntax_error_has_a_line() -> None:
    problem = only_problem(HEAD + "  bad_indent: 1\nsteps: []\n")
    assert str(problem).startswith("flow.yaml:4:3: (top): YAML syntax: ")


def test_duplicate_yaml_key_is_reported() -> None:
    problem = only_problem(HEAD + GOOD_STEPS + "    integration: api\n")
    assert (problem.line, problem.column, problem.path) == (12, 5, "steps.0.integration")
    assert problem.message == "duplicate key 'integration' (first on line 9; this one wins)"


def test_empty_file_is_reported() -> None:
    assert only_problem("# nothing\n").message == "the file is empty"


def test_missing_env_var_is_reported_with_its_line() -> None:
    text = HEAD + GOOD_STEPS.replace("http://api.example", "${API_URL}")
    problem = only_problem(text)
    assert (problem.line, problem.path) == (6, "integrations.api.base_url")
    assert "API_URL" in problem.message


def test_env_var_is_substituted_and_default_used() -> None:
    text = HEAD + "settings:\n  key: ${KEY}\n  region: ${REGION:-eu}\n" + GOOD_STEPS
    flow = parse_flow(text, "flow.yaml", {"KEY": "abcd"})
    assert flow.settings == {"key": "abcd", "region": "eu"}
    flow = parse_flow(text, "flow.yaml", {"KEY": "abcd", "REGION": "us"})
    assert flow.settings["region"] == "us"


def test_template_syntax_error_is_reported_on_its_key_line() -> None:
    text = HEAD + GOOD_STEPS + "    map:\n      ok: '{{ response.a }}'\n      broken: '{{ response.a '\n"
    problem = only_problem(text)
    assert (problem.line, problem.path) == (14, "steps.0.map.broken")
    assert problem.message.startswith("template syntax")


def test_unknown_integration_is_reported() -> None:
    problem = only_problem(HEAD + GOOD_STEPS.replace("integration: api", "integration: nope"))
    assert (problem.line, problem.path) == (9, "steps.0.integration")
    assert "unknown integration 'nope'" in problem.message and "api" in problem.message


def test_duplicate_step_names_are_reported() -> None:
    again = "  - name: one\n    integration: api\n    request: {url: /again}\n"
    problem = only_problem(HEAD + GOOD_STEPS + again)
    assert (problem.line, problem.path) == (12, "steps.1.name")
    assert "duplicate step name 'one'" in problem.message


def test_bad_duration_is_reported() -> None:
    problem = only_problem(HEAD + GOOD_STEPS + "    timeout: soon\n")
    assert (problem.line, problem.path) == (12, "steps.0.timeout")


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FlowFileError, match="cannot read"):
        load_flow(f"{tmp_path}/missing.yaml", {})


CACHING = """\
integrations:
  api:
    base_url: http://api.example
    cache: {max_entries: 500}
  crm:
    base_url: http://crm.example
steps:
  - name: one
    integration: api
    request: {url: /check}
    fallback: [{cache: 30m}]
  - name: two
    integration: api
    request: {url: /other}
    fallback: [{cache: 2h}, {skip: true}]
  - name: three
    integration: crm
    request: {url: /crm}
    fallback: [{cache: 1h}]
  - name: four
    request: {url: http://x.example/y}
    fallback: [{cache: 10s}]
"""


def test_the_cache_policy_comes_from_the_flow() -> None:
    """Per integration: its max_entries (default 10,000) and the longest `cache:` age of its
    steps (they share entries); integrations nothing caches have no limit, so their keys go."""
    flow = parse_flow(HEAD + CACHING, "flow.yaml", {})
    assert flow.integrations["api"].cache_max_entries == 500
    assert flow.cache_policy == CachePolicy(
        {
            "api": CacheLimit(max_entries=500, max_age=7200.0),
            "crm": CacheLimit(max_entries=10_000, max_age=3600.0),
            "step:four": CacheLimit(max_entries=10_000, max_age=10.0),
        },
        default=None,
    )
    assert parse_flow(HEAD + GOOD_STEPS, "flow.yaml", {}).cache_policy.limits == {}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "must be at least 1 (got 0)"),
        ("-5", "must be at least 1 (got -5)"),
        ("lots", "must be an integer (got 'lots')"),
        ("1.5", "must be an integer (got 1.5)"),
        ("20000000", "must be at most 10000000 (got 20000000)"),
    ],
)
def test_a_bad_max_entries_is_reported(value: str, message: str) -> None:
    problem = only_problem(HEAD + CACHING.replace("max_entries: 500", f"max_entries: {value}"))
    assert (problem.line, problem.path, problem.message) == (7, "integrations.api.cache.max_entries", message)


def test_an_unknown_cache_key_is_reported() -> None:
    problem = only_problem(HEAD + CACHING.replace("max_entries: 500", "max_age: 1h"))
    assert (problem.line, problem.path) == (7, "integrations.api.cache.max_age")
    assert "unknown key 'max_age'" in problem.message


def test_a_cache_limit_on_an_integration_nothing_caches_is_reported() -> None:
    url = "base_url: http://api.example"
    limited = GOOD_STEPS.replace(url, url + "\n    cache: {}")
    problem = only_problem(HEAD + limited)
    assert (problem.line, problem.path) == (7, "integrations.api.cache")
    assert problem.message == (
        "no step of this integration has `fallback: [{cache: AGE}]`, so nothing is cached"
    )


# Review finding 5: YAML that parses but cannot be built into data (an unknown tag, a complex
# key) or that has a character YAML refuses is a problem with its place, not a traceback.
@pytest.mark.parametrize(
    ("mistake", "line", "column", "message"),
    [
        ("timeout: !secs 5\n", 4, 10, "YAML: could not determine a constructor for the tag '!secs'"),
        ("? [a, b]\n: 1\n", 4, 3, "YAML: found unhashable key (while constructing a mapping)"),
    ],
)
def test_a_yaml_value_that_cannot_be_built_is_a_problem(
    mistake: str, line: int, column: int, message: str
) -> None:
    problem = only_problem(HEAD + mistake + GOOD_STEPS)
    assert (problem.line, problem.column, problem.path, problem.message) == (line, column, "", message)


def test_a_character_yaml_refuses_is_a_problem() -> None:
    problem = only_problem(HEAD + "note: \x07\n" + GOOD_STEPS)
    assert (problem.line, problem.column) == (4, 7)
    assert problem.message.startswith("YAML: unacceptable character #x0007")


def test_a_cases_file_with_an_unknown_tag_is_a_problem(tmp_path: Path) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text("cases:\n  - name: one\n    lead: !x {}\n", encoding="utf-8")
    with pytest.raises(FlowFileError) as caught:
        load_cases(cases)
    assert [str(problem) for problem in caught.value.problems] == [
        f"{cases}:3:11: (top): YAML: could not determine a constructor for the tag '!x'"
    ]


@pytest.mark.parametrize(
    ("extra", "pool_size"),
    [("", 100), ("    concurrency: 40\n", 100), ("    concurrency: 250\n", 250),
     ("    concurrency: 250\n    pool: {size: 50}\n", 50)],
)  # fmt: skip
def test_the_pool_holds_the_integrations_concurrency_unless_told(extra: str, pool_size: int) -> None:
    """Requests beyond the pool wait for a connection: by default the pool is no smaller
    than the concurrency asked for (at least 100)."""
    text = HEAD + GOOD_STEPS.replace(
        "    base_url: http://api.example\n", "    base_url: http://api.example\n" + extra
    )
    assert parse_flow(text, "flow.yaml", {}).integrations["api"].pool_size == pool_size
