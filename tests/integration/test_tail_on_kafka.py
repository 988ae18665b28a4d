"""`leadstreams tail` on the real broker: the last N over partitions by time, --from an
offset, a time or the end, filters on our events (the last N *matching* found further
back), headers, no wait at the end of the topics, and a follow that Ctrl-C ends cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from agents.kafka_connection import KafkaConnection
from agents.kafka_io import ensure_topics, publish
from agents.topic_reader import iso
from examples.support.process import wait_for

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]
START = int(time.time() * 1000) - 3_600_000  # an hour ago: the messages' times, 1 s apart


def leadstreams(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


async def produce(
    bootstrap: str, topic: str, messages: list[tuple[int, str, bytes, list[tuple[str, bytes]]]]
) -> None:
    """(partition, key, value, headers), the n-th written at START + n seconds."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for n, (partition, key, value, headers) in enumerate(messages):
            await producer.send_and_wait(topic, value, key=key.encode(), partition=partition,
                                         timestamp_ms=START + n * 1000, headers=headers)  # fmt: skip
    finally:
        await producer.stop()


def event(lead_id: str, outcome: str, reason: str | None, step: str = "check") -> bytes:
    return orjson.dumps({
        "id": lead_id, "flow": "f", "outcome": outcome, "reason": reason, "lead": {"id": lead_id},
        "steps": [{"name": step, "outcome": outcome}], "input": {"topic": "in", "partition": 0, "offset": 0},
    })  # fmt: skip


async def test_tail_reads_positions_and_the_last_n_over_partitions(kafka_bootstrap: str) -> None:
    topic = f"tail-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, [topic], partitions=3)
    await produce(kafka_bootstrap, topic, [(n % 3, f"k{n}", b'{"n": %d}' % n, []) for n in range(9)])

    last = leadstreams("tail", topic, "-n", "4", "--bootstrap", kafka_bootstrap)
    assert last.returncode == 0, last.stderr
    assert last.stdout.splitlines() == [
        '{"n": 5}',
        '{"n": 6}',
        '{"n": 7}',
        '{"n": 8}',
    ]  # by time, over partitions

    began = time.monotonic()
    whole = leadstreams("tail", topic, "--bootstrap", kafka_bootstrap)
    assert sorted(whole.stdout.splitlines()) == [b'{"n": %d}'.decode() % n for n in range(9)]
    assert "9 message(s)" in whole.stderr
    assert time.monotonic() - began < 8  # up to the ends seen at start: no 10 s wait any more

    offset = leadstreams("tail", topic, "--from", "2", "--format", "human", "--bootstrap", kafka_bootstrap)
    lines = offset.stdout.splitlines()
    assert sorted(line.split()[1] for line in lines) == [f"{topic}[{p}]@2" for p in range(3)]
    assert f"{iso(START + 6000)} {topic}[0]@2 key=k6 " in offset.stdout

    since = leadstreams("tail", topic, "--from", iso(START + 6000), "--bootstrap", kafka_bootstrap)
    assert sorted(since.stdout.splitlines()) == ['{"n": 6}', '{"n": 7}', '{"n": 8}']
    ago = leadstreams("tail", topic, "--from", "59m", "--bootstrap", kafka_bootstrap)  # START is 60 min ago
    assert ago.stdout == "" and "0 message(s)" in ago.stderr
    end = leadstreams("tail", topic, "--from", "end", "--bootstrap", kafka_bootstrap)
    assert end.returncode == 0 and end.stdout == ""

    bad = leadstreams("tail", topic, "--from", "yesterday", "--bootstrap", kafka_bootstrap)
    assert bad.returncode == 2 and "'yesterday' is not a time" in bad.stderr


async def test_tail_filters_our_events_and_shows_headers(kafka_bootstrap: str) -> None:
    topic = f"tail-ev-{uuid.uuid4().hex[:8]}"
    replayed = [("leadstreams-replayed-from", b"x.errors/0/7")]
    messages = [(0, "e1", event("e1", "error", "check: HTTP 503: down"), replayed)]
    messages += [(0, f"s{n}", event(f"s{n}", "success", None, step="other"), []) for n in range(20)]
    await produce(kafka_bootstrap, topic, messages)

    # The last error is 20 messages back: the window at the end widens until it is found.
    errors = leadstreams("tail", topic, "-n", "1", "--outcome", "error", "--format", "human",
                         "--headers", "--bootstrap", kafka_bootstrap)  # fmt: skip
    assert errors.returncode == 0, errors.stderr
    assert errors.stdout.splitlines() == [
        f"{iso(START)} {topic}[0]@0 key=e1 error check: HTTP 503: down leadstreams-replayed-from=x.errors/0/7"
    ]
    by_id = leadstreams("tail", topic, "--id", "s3", "--id", "s4", "--bootstrap", kafka_bootstrap)
    assert [orjson.loads(line)["id"] for line in by_id.stdout.splitlines()] == ["s3", "s4"]
    by_step = leadstreams("tail", topic, "--step", "check", "--headers", "--bootstrap", kafka_bootstrap)
    [whole] = [orjson.loads(line) for line in by_step.stdout.splitlines()]  # --headers: the record form
    assert whole["key"] == "e1" and whole["headers"] == {"leadstreams-replayed-from": "x.errors/0/7"}
    assert whole["value"]["outcome"] == "error" and whole["offset"] == 0


async def test_follow_prints_new_messages_until_ctrl_c(kafka_bootstrap: str) -> None:
    topic = f"tail-f-{uuid.uuid4().hex[:8]}"
    await produce(kafka_bootstrap, topic, [(0, "a", b'{"id": "a"}', [])])
    follow = subprocess.Popen(
        [sys.executable, "-m", "agents.cli", "tail", topic, "-n", "1", "-f", "--bootstrap", kafka_bootstrap],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    lines: list[str] = []

    def read() -> None:
        assert follow.stdout is not None
        for line in follow.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        await wait_for(lambda: lines == ['{"id": "a"}\n'], 30, "the last message")
        await produce(kafka_bootstrap, topic, [(0, "b", b'{"id": "b"}', [])])
        await wait_for(lambda: len(lines) == 2, 30, "the new message")
        assert lines[1] == '{"id": "b"}\n'
    finally:
        follow.send_signal(signal.SIGINT)
        _, stderr = follow.communicate(timeout=30)
    assert follow.returncode == 0, stderr
    assert "Traceback" not in stderr and "error" not in stderr, stderr


async def test_tail_and_trace_over_sasl_ssl_with_mutual_tls(tmp_path: Path) -> None:
    """The worker's connection settings (here a --kafka-config for SASL_SSL, SCRAM-SHA-512 and
    a client certificate) read the topics as well."""
    directory = os.environ.get("LEADSTREAMS_SECURED_CONFIG_DIR")
    if not directory:
        pytest.fail("LEADSTREAMS_SECURED_CONFIG_DIR is not set: run through `make test` (with-kafka.sh)")
    config = Path(directory) / "client-sasl-ssl.properties"
    kafka = KafkaConnection.resolve({}, str(config), environ={})
    s = uuid.uuid4().hex[:8]
    names = {"input": f"sec-{s}.in", "enriched": f"sec-{s}.out", "errors": f"sec-{s}.err"}
    await ensure_topics(kafka, names.values())
    await publish(kafka, names["input"], [(b"z1", b'{"id": "z1"}')])
    await publish(kafka, names["errors"], [(b"z1", event("z1", "error", "HTTP 503"))])
    flow = tmp_path / "flow.yaml"
    flow.write_text(f"topics: {orjson.dumps(names).decode()}\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEADSTREAMS_")}

    def secured(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agents.cli", *args, "--kafka-config", str(config)],
                              capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)  # fmt: skip

    tailed = secured("tail", names["errors"], "-n", "1", "--format", "human")
    assert tailed.returncode == 0 and f"{names['errors']}[0]@0 key=z1 error HTTP 503" in tailed.stdout, tailed
    traced = secured("trace", "z1", str(flow))
    assert [line.split()[1] for line in traced.stdout.splitlines()] == [
        f"{names['input']}[0]@0",
        f"{names['errors']}[0]@0",
    ], traced
