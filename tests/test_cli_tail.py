"""The broker-free parts of tail, replay and trace: times and positions, what a message
says (its kind, lead ids, outcome, reason), the filters, the lines, a flow's topics."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from agents.cli_replay import _from_event
from agents.record_view import Filters, human, json_line, view
from agents.topic_reader import Start, TopicRecord, iso, parse_time
from streams.delayed import RetryState
from streams.events import Source

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def record(value: object, key: str | None = "k", headers: tuple[tuple[str, bytes], ...] = ()) -> TopicRecord:
    body = value if isinstance(value, bytes | None) else orjson.dumps(value)
    return TopicRecord("t", 1, 7, key.encode() if key else None, body, NOW_MS, headers)


EVENT = {
    "id": "l1", "flow": "f", "outcome": "error", "reason": "check: HTTP 503", "lead": {"id": "l1"},
    "steps": [{"name": "check"}, {"name": "score"}], "input": {"topic": "in", "partition": 0, "offset": 3},
}  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10m", NOW_MS - 600_000),
        ("2h", NOW_MS - 7_200_000),
        ("1d", NOW_MS - 86_400_000),
        ("2026-12-01T11:00:00Z", NOW_MS - 3_600_000),
        ("2026-12-01T11:00:00", NOW_MS - 3_600_000),  # no zone: UTC
        ("2026-12-01T12:00:00+01:00", NOW_MS - 3_600_000),
        ("2026-12-01", NOW_MS - 12 * 3_600_000),
    ],
)
def test_times_are_iso_or_ago(text: str, expected: int) -> None:
    assert parse_time(text, NOW) == expected


def test_a_time_that_is_none_says_what_to_give() -> None:
    with pytest.raises(ValueError, match=r"'yesterday' is not a time: give an ISO time .* or a time ago"):
        parse_time("yesterday", NOW)


def test_positions() -> None:
    assert Start.parse("beginning") == Start("beginning")
    assert Start.parse("END") == Start("end")
    assert Start.parse("42") == Start("offset", 42)
    assert Start.parse("10m", NOW) == Start("time", NOW_MS - 600_000)


def test_what_messages_say() -> None:
    event = view(record(EVENT))
    assert (event.kind, event.ids, event.outcome, event.reason) == (
        "event",
        {"k", "l1"},
        "error",
        "check: HTTP 503",
    )
    assert event.steps == ("check", "score")
    attempts = {"lead_id": "l2", "attempt": 1, "result": "gave_up", "reason": "HTTP 500", "step": "crm"}
    seen = view(record(attempts, key=None))
    assert (seen.kind, seen.ids, seen.outcome, seen.reason, seen.steps) == (
        "attempts", {"l2"}, "gave_up", "HTTP 500", ("crm",)
    )  # fmt: skip
    queued = {
        "lead_id": "l3",
        "idempotency_key": "x",
        "step": "crm",
        "request": {"method": "POST", "url": "u"},
    }
    assert view(record(queued)).outcome == "queued" and view(record(queued)).reason == "POST u"
    headers = tuple(RetryState(2, Source("in", 0, 3), 0.0, "check: HTTP 503").headers())
    deferred = view(record({"id": "l4"}, headers=headers))
    assert (deferred.kind, deferred.outcome, deferred.reason) == (
        "deferred",
        "deferred",
        "attempt 2: check: HTTP 503",
    )
    assert view(record({"id": 5})).ids == {"k", "5"} and view(record({"id": 5})).kind == "lead"
    assert (
        view(record(b"not json", key=None)) == view(record(b"[1]", key=None)) == view(record(None, key=None))
    )
    assert view(record(None, key=None)).ids == frozenset()


def test_filters() -> None:
    error = record(EVENT)
    assert not Filters() and Filters().match(error)
    assert Filters(outcomes=frozenset({"error", "failure"})).match(error)
    assert not Filters(outcomes=frozenset({"success"})).match(error)
    assert Filters(ids=frozenset({"l1"})).match(error) and Filters(ids=frozenset({"k"})).match(error)
    assert not Filters(ids=frozenset({"l9"})).match(error)
    assert Filters(steps=frozenset({"score"})).match(error) and not Filters(steps=frozenset({"x"})).match(
        error
    )
    assert Filters(reason="http 5").match(error) and not Filters(reason="timeout").match(error)
    assert Filters(since_ms=NOW_MS, until_ms=NOW_MS).match(error)
    assert not Filters(since_ms=NOW_MS + 1).match(error) and not Filters(until_ms=NOW_MS - 1).match(error)
    assert not Filters(outcomes=frozenset({"error"})).match(record(b"not json"))


def test_lines() -> None:
    replayed = (("leadstreams-replayed-from", b"e/0/1"),)
    assert human(record(EVENT)) == f"{iso(NOW_MS)} t[1]@7 key=k error check: HTTP 503"
    assert human(record({"id": "x"}, key=None, headers=replayed), headers=True) == (
        f'{iso(NOW_MS)} t[1]@7 key=- {{"id":"x"}} leadstreams-replayed-from=e/0/1'
    )
    assert human(record({**EVENT, "reason": "a\nb " + "x" * 300})).endswith("…")
    assert "\n" not in human(record({**EVENT, "reason": "a\nb"}))
    assert json_line(record(b'{"a": 1}'), whole=False) == '{"a": 1}'
    assert orjson.loads(json_line(record(b'{"a": 1}', headers=replayed), whole=True)) == {
        "topic": "t", "partition": 1, "offset": 7, "timestamp": iso(NOW_MS), "key": "k",
        "headers": {"leadstreams-replayed-from": "e/0/1"}, "value": {"a": 1},
    }  # fmt: skip
    assert orjson.loads(json_line(record(b"\xffnot json"), whole=True))["value"] == "\ufffdnot json"


def test_what_replay_sends_when_the_input_is_gone() -> None:
    assert _from_event(view(record(EVENT))) == b'{"id":"l1"}'  # the event's lead
    bad = {**EVENT, "lead": None, "raw": base64.b64encode(b"not json").decode()}
    assert _from_event(view(record(bad))) == b"not json"
    cut = {**bad, "raw_bytes": 2_000_000}  # an oversized input: its raw is only the start
    assert _from_event(view(record(cut))) is None


def test_replay_and_trace_read_only_the_flows_topics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The partners' secrets are not needed to name the topics; a variable the topics use is."""
    from agents.cli import main

    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "name: f\ntopics: {input: '${IN_TOPIC}', enriched: o, errors: e}\nsettings: {k: '${SECRET}'}\n"
    )
    monkeypatch.delenv("IN_TOPIC", raising=False)
    result = CliRunner().invoke(
        main, ["trace", "x", str(flow), "--bootstrap", "127.0.0.1:1", "--broker-wait", "0"]
    )
    assert result.exit_code == 2
    assert (
        result.output.strip()
        == f"error: flow {flow}: topics.input: environment variable IN_TOPIC is not set: export it"
    )
    flow.write_text("name: f\nsteps: []\n")
    result = CliRunner().invoke(
        main, ["replay", str(flow), "--bootstrap", "127.0.0.1:1", "--broker-wait", "0"]
    )
    assert result.exit_code == 2
    assert result.output.strip() == f"error: flow {flow}: no topics: {{input, enriched, errors}} in the file"
