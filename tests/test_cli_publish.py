"""`publish` reads its FILE before any contact with Kafka: JSON lines, a JSON array or one
(pretty-printed) object; every entry that is not a JSON object named, the file refused
unless --allow-bad. The broker side (missing topics, --create, what is sent) is in
tests/integration/test_publish_on_kafka.py."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from agents.cli import main
from agents.lead_file import read_leads
from examples.support.process import free_port


def test_json_lines_are_sent_as_written_with_the_id_as_key() -> None:
    leads = read_leads(b'{"id": "a", "x": 1}\r\n\n  \n{"id": 7}\n{"email": "e"}\n')
    assert leads.shape == "JSON lines"
    assert leads.bad == []
    assert leads.messages(allow_bad=False) == [
        (b"a", b'{"id": "a", "x": 1}'),
        (b"7", b'{"id": 7}'),
        (None, b'{"email": "e"}'),
    ]


def test_a_json_array_is_one_message_per_element() -> None:
    """A pretty-printed .json file was sent as one garbage record per line."""
    leads = read_leads(b'\xef\xbb\xbf[\n  {"id": "p1",\n   "email": "a@b.c"},\n  {"id": "p2"}\n]\n')
    assert leads.shape == "a JSON array"
    assert leads.messages(allow_bad=False) == [
        (b"p1", b'{"id":"p1","email":"a@b.c"}'),
        (b"p2", b'{"id":"p2"}'),
    ]


def test_a_pretty_printed_object_is_one_message() -> None:
    leads = read_leads(b'{\n  "id": "one",\n  "tags": [1,\n 2]\n}\n')
    assert leads.shape == "a JSON object"
    assert leads.messages(allow_bad=False) == [(b"one", b'{"id":"one","tags":[1,2]}')]


def test_every_bad_line_is_named_and_sent_only_when_allowed() -> None:
    leads = read_leads(b'{"id": "a"}\n[1]\nnope\n"x"\n\xff\xfe\n{"id": "b"}\n')
    assert [(e.where, e.problem) for e in leads.bad] == [
        ("2", "an array, not a JSON object"),
        ("3", "not JSON (invalid literal, expected 'null': line 1 column 1 (char 0))"),
        ("4", "a string, not a JSON object"),
        ("5", "not UTF-8 text"),
    ]
    assert [value for _, value in leads.messages(allow_bad=False)] == [b'{"id": "a"}', b'{"id": "b"}']
    sent = leads.messages(allow_bad=True)
    assert [value for _, value in sent] == [
        b'{"id": "a"}',
        b"[1]",
        b"nope",
        b'"x"',
        b"\xff\xfe",
        b'{"id": "b"}',
    ]
    assert [key for key, _ in sent] == [b"a", None, None, None, None, b"b"]


def test_an_arrays_elements_that_are_not_objects_are_named() -> None:
    leads = read_leads(orjson.dumps([{"id": "a"}, 3, None]))
    assert [(e.where, e.problem) for e in leads.bad] == [
        ("element 2", "a number, not a JSON object"),
        ("element 3", "null, not a JSON object"),
    ]


def test_a_broken_document_is_one_mistake_at_its_position() -> None:
    """Not one "not JSON" per line of a pretty-printed file with one missing brace."""
    (entry,) = read_leads(b'[\n  {"id": "p1"},\n  {"id": "p2"\n]\n').entries
    assert entry.where == "4"
    assert entry.problem == (
        "not JSON (unexpected character, expected ',' or '}': line 4 column 1); read as a JSON array"
    )
    (entry,) = read_leads(b'{\n  "id": "one",\n}\n').entries
    assert entry.problem is not None and entry.problem.endswith("read as one JSON object over several lines")


def test_json_lines_with_a_bad_first_line_stay_json_lines() -> None:
    leads = read_leads(b'{"id": "a",\n{"id": "b"}\n')
    assert leads.shape == "JSON lines"
    assert [e.where for e in leads.bad] == ["1"]


def run_publish(file: Path, *args: str) -> tuple[int, str]:
    """The command on an unreachable broker with no wait: FILE's checks come first."""
    unreachable = f"127.0.0.1:{free_port()}"
    result = CliRunner().invoke(
        main, ["publish", "t.x", str(file), "--bootstrap", unreachable, "--broker-wait", "0", *args]
    )
    return result.exit_code, result.output


def test_a_file_with_bad_lines_is_refused_with_all_of_them_named(tmp_path: Path) -> None:
    file = tmp_path / "leads.jsonl"
    file.write_bytes(b'{"id": "a"}\n[1]\n{"id": "b"}\nnope\n')
    code, output = run_publish(file)
    assert code == 2
    lines = output.splitlines()
    assert lines[:2] == [f"{file}:2: an array, not a JSON object", f"{file}:4: not JSON (invalid literal, "
                         "expected 'null': line 1 column 1 (char 0))"]  # fmt: skip
    assert "2 of 4 lines are not JSON objects (above); nothing sent" in output
    assert "--allow-bad sends bad lines as-is" in output


def test_one_bad_line_is_one_line(tmp_path: Path) -> None:
    file = tmp_path / "leads.json"
    file.write_bytes(b'[{"id": "a"}, 3]')
    code, output = run_publish(file)
    assert code == 2
    assert f"{file}: element 2: a number, not a JSON object; nothing sent: FILE is JSON lines" in output
    assert output.count("\n") == 1 and output.startswith("error: Invalid value for 'FILE': "), output


@pytest.mark.parametrize("args", [["--allow-bad"], []])
def test_with_allow_bad_or_a_good_file_it_goes_on_to_kafka(tmp_path: Path, args: list[str]) -> None:
    file = tmp_path / "leads.jsonl"
    file.write_bytes(b'{"id": "a"}\n' + (b"nope\n" if args else b""))
    code, output = run_publish(file, *args)
    assert code == 3 and "connection refused" in output, output  # past FILE's checks: the broker's turn
