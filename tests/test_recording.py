"""``try --record`` pieces: answers as recorded, settings' stand-ins, appending to a cases file,
and the replay's comparison accepting masked secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streams.case_file import save_case
from streams.http_types import HttpResult
from streams.masking import Masker
from streams.outcomes import FlowResult, Outcome, StepResult
from streams.problems import FlowFileError
from streams.recording import answer_of, recorded_settings, referenced_variables
from streams.testcases import compare, load_cases


def result(body: bytes, content_type: str, status: int = 200, **headers: str) -> HttpResult:
    return HttpResult(status, {"content-type": content_type, "date": "now", **headers}, body, 0.01)


@pytest.mark.parametrize(
    ("answer", "parsed_only", "recorded"),
    [
        (result(b'{"a": 1}', "application/json"), True, {"status": 200, "json": {"a": 1}}),
        # a step reading the body as text gets the same bytes, spaces and all
        (result(b'{"a": 1}', "application/json"), False, {"status": 200, "body": '{"a": 1}',
                                                           "headers": {"content-type": "application/json"}}),
        (result(b'{"a":1}', "application/json"), False, {"status": 200, "json": {"a": 1}}),
        (result(b'{"a": 1}', "application/problem+json", 422), True,
         {"status": 422, "json": {"a": 1}, "headers": {"content-type": "application/problem+json"}}),
        (result(b"<r>1</r>", "text/xml"), True, {"status": 200, "xml": "<r>1</r>",
                                                 "headers": {"content-type": "text/xml"}}),
        (result(b"ok|1", "text/plain", retry_after="5"), True,
         {"status": 200, "body": "ok|1", "headers": {"content-type": "text/plain", "retry_after": "5"}}),
        (result(b"not json", "application/json"), True, {"status": 200, "body": "not json",
                                                          "headers": {"content-type": "application/json"}}),
    ],
)  # fmt: skip
def test_answers_are_recorded_as_the_step_reads_them(
    answer: HttpResult, parsed_only: bool, recorded: dict[str, Any]
) -> None:
    assert answer_of(answer, parsed_only) == recorded


def test_settings_get_stand_ins_for_secrets_only() -> None:
    flow = {"settings": {"key": "${API_KEY}", "password": "${PASSWORD}"},
            "integrations": {"api": {"base_url": "${URL:-https://x.example}", "timeout": "${T}"}},
            "steps": [{"url": "${URL}/a/${API_KEY}"}]}  # fmt: skip
    names = referenced_variables(flow)
    assert names == ["API_KEY", "PASSWORD", "URL", "T"]
    env = {"API_KEY": "k-123456", "PASSWORD": "password", "URL": "https://10.1.2.3:8443", "T": "5s"}
    masker = Masker(["k-123456", "password", "https://10.1.2.3:8443"])
    assert recorded_settings(names, env, masker) == {
        "API_KEY": "recorded-api-key",
        "PASSWORD": "recorded-2",  # "recorded-password" would hold the real password
        "URL": "https://url.invalid",  # still a URL, for templates that build on it
        "T": "5s",
    }
    assert recorded_settings(["UNSET"], env, masker) == {}
    assert recorded_settings(["A"], {"A": "record"}, Masker(["record"])) == {"A": "stand-in-1"}


EXISTING = """\
# hand-written cases: this comment stays
settings: {API_KEY: test-key-0001}
cases:
  - name: first   # and this one
    lead: {id: a}
    expect: {outcome: skip}
"""


def case(name: str) -> dict[str, Any]:
    return {"name": name, "lead": {"id": "r"}, "responses": {"s": [{"status": 200, "json": {"ok": True}}]},
            "expect": {"outcome": "success", "steps": {"s": "success"}}}  # fmt: skip


def test_a_case_is_appended_as_text_with_a_free_name(tmp_path: Path) -> None:
    path = tmp_path / "flow.cases.yaml"
    path.write_text(EXISTING)
    first = save_case(path, case("first"), {"API_KEY": "recorded-api-key", "URL": "u"}, "flow.yaml")
    second = save_case(path, case("first"), {}, "flow.yaml")
    assert (first.name, second.name) == ("first (2)", "first (3)")
    assert not first.rewritten and first.missing_settings == ["URL"]
    text = path.read_text()
    assert text.startswith(EXISTING)
    assert "\n  # recorded by leadstreams try --record, " in text  # at the items' indentation
    cases, settings = load_cases(path)
    assert [c.name for c in cases] == ["first", "first (2)", "first (3)"]
    assert cases[2].responses == {"s": [{"status": 200, "json": {"ok": True}}]}
    assert settings == {"API_KEY": "test-key-0001"}


def test_a_new_cases_file_holds_the_settings(tmp_path: Path) -> None:
    path = tmp_path / "new.cases.yaml"
    saved = save_case(path, case("c"), {"API_KEY": "recorded-api-key"}, "new.yaml")
    assert saved.name == "c" and not saved.rewritten
    cases, settings = load_cases(path)
    assert [c.name for c in cases] == ["c"] and settings == {"API_KEY": "recorded-api-key"}


@pytest.mark.parametrize(
    "layout",
    [
        "cases: [{name: a, lead: {}, expect: {outcome: skip}}]\n",  # a flow list: no text to append to
        "cases:\n- name: a\n  lead: {}\n  expect: {outcome: skip}\nsettings: {K: v}\n",  # cases not last
    ],
)
def test_other_layouts_are_rewritten_whole_and_say_so(tmp_path: Path, layout: str) -> None:
    path = tmp_path / "flow.cases.yaml"
    path.write_text(layout)
    saved = save_case(path, case("b"), {}, "flow.yaml")
    assert saved.rewritten
    assert [c.name for c in load_cases(path)[0]] == ["a", "b"]


@pytest.mark.parametrize(
    "text",
    [
        "cases: [{name: a, lead: {}}]\n",  # a case without expect
        "cases: []\nsettings: 5\n",  # empty, and wrong besides: the replay's own error stands
    ],
)
def test_an_invalid_cases_file_is_not_touched(tmp_path: Path, text: str) -> None:
    path = tmp_path / "flow.cases.yaml"
    path.write_text(text)
    with pytest.raises(FlowFileError):
        save_case(path, case("b"), {}, "flow.yaml")
    assert path.read_text() == text


def test_an_empty_cases_list_is_recorded_into(tmp_path: Path) -> None:
    path = tmp_path / "flow.cases.yaml"
    path.write_text("# cases to come\nsettings: {API_KEY: test-key-0001}\ncases: []\n")
    saved = save_case(path, case("b"), {"API_KEY": "recorded-api-key", "URL": "u"}, "flow.yaml")
    assert saved.name == "b" and saved.rewritten  # a flow list: rewritten whole, and said so
    assert saved.missing_settings == ["URL"]
    cases, settings = load_cases(path)
    assert [c.name for c in cases] == ["b"] and settings == {"API_KEY": "test-key-0001"}


def test_compare_accepts_a_masked_secret_for_the_stand_in_in_clear() -> None:
    replayed = FlowResult(
        outcome=Outcome.FAILURE,
        reason="call: HTTP 401: key recorded-api-key refused",
        lead={"echo": "recorded-api-key"},
        steps=[StepResult("call", Outcome.FAILURE, "HTTP 401: key recorded-api-key refused")],
        vars={},
    )
    expect = {
        "reason": "call: HTTP 401: key *** refused",
        "lead": {"echo": "***"},
        "steps": {"call": {"outcome": "failure", "reason": "HTTP 401: key *** refused"}},
    }
    assert compare(expect, replayed, Masker(["recorded-api-key"])) == []
    assert compare(expect, replayed) != []  # without the flow's secrets, a mask is just text
    assert compare({"lead": {"echo": "***"}}, replayed, Masker(["other-secret"])) == [
        "lead.echo: expected '***', got 'recorded-api-key'"
    ]
