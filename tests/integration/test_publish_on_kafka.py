"""`publish` on the real broker (whose auto.create.topics.enable is on, as Kafka's default):
a missing topic is refused in one line and not created behind the user's back; --create
makes it with --partitions; a JSON array file is one message per lead; --allow-bad sends
the bad lines as they are."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from agents.kafka_io import admin_client, collect, partition_count

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]


def leadstreams(*args: str, bootstrap: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args, "--bootstrap", bootstrap],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip


async def test_a_missing_topic_is_refused_in_one_line_and_not_created(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """It was created by the broker with 1 partition on the first send (a worker then can
    not share it); on a broker that does not auto-create, publish waited ~60 s."""
    topic = f"pub-missing-{uuid.uuid4().hex[:8]}"
    leads = tmp_path / "leads.jsonl"
    leads.write_text('{"id": "a"}\n')
    result = leadstreams("publish", topic, str(leads), bootstrap=kafka_bootstrap)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"error: topic {topic} does not exist at {kafka_bootstrap}: start the flow's worker first (it "
        "creates its topics), or pass --create"
    ]
    async with admin_client(kafka_bootstrap) as admin:
        assert topic not in await admin.list_topics()


async def test_create_and_an_array_file_and_allow_bad(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = f"pub-array-{uuid.uuid4().hex[:8]}"
    array = tmp_path / "leads.json"
    array.write_text('[\n  {"id": "a1", "email": "a@example.com"},\n  {"id": "a2"}\n]\n')
    result = leadstreams(
        "publish", topic, str(array), "--create", "--partitions", "2", bootstrap=kafka_bootstrap
    )
    assert result.returncode == 0, result.stderr
    assert f"created topic {topic} with 2 partition(s)" in result.stderr
    assert f"published 2 message(s) to {topic} from a JSON array" in result.stderr
    assert await partition_count(kafka_bootstrap, topic) == 2

    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"id": "m1"}\nnot json\n[1]\n')
    refused = leadstreams("publish", topic, str(mixed), bootstrap=kafka_bootstrap)
    assert refused.returncode == 2 and "2 of 3 lines are not JSON objects" in refused.stderr, refused.stderr
    allowed = leadstreams("publish", topic, str(mixed), "--allow-bad", bootstrap=kafka_bootstrap)
    assert allowed.returncode == 0, allowed.stderr
    assert f"published 3 message(s) to {topic} (2 of them not a JSON object: --allow-bad)" in allowed.stderr

    records = await collect(kafka_bootstrap, [topic], lambda r: len(r) >= 5, timeout=20)

    def order(message: tuple[bytes | None, bytes]) -> tuple[bytes, bytes]:
        return message[0] or b"", message[1]

    assert sorted(((r.key, r.value) for r in records), key=order) == sorted([
        (b"a1", b'{"id":"a1","email":"a@example.com"}'), (b"a2", b'{"id":"a2"}'),
        (b"m1", b'{"id": "m1"}'), (None, b"not json"), (None, b"[1]"),
    ], key=order)  # fmt: skip
