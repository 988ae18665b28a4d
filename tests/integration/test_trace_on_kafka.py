"""`leadstreams trace`: a lead's messages across a flow's topics, written here as the worker
writes them (input, a deferral on a retry tier, an error event, a replay, the enriched
event, a notification and its attempts event), found in time order; a lead without an
id is followed through its replay, where it gets another derived id."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from agents.record_view import REPLAYED_FROM
from agents.topic_names import topic_name_problem
from streams.delayed import RetryState
from streams.events import Source

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]
Message = tuple[str, str | None, dict[str, object] | bytes, list[tuple[str, bytes]]]


def event(
    lead_id: str, outcome: str, reason: str | None, where: str, lead: object = None
) -> dict[str, object]:
    topic, partition, offset = where.rsplit("/", 2)
    return {
        "id": lead_id, "flow": "traced", "outcome": outcome, "reason": reason,
        "lead": lead or {"id": lead_id},
        "steps": [{"name": "check", "outcome": outcome, "reason": reason}],
        "received_at": "2026-12-01T10:00:00.000Z", "completed_at": "2026-12-01T10:00:00.100Z",
        "input": {"topic": topic, "partition": int(partition), "offset": int(offset)},
    }  # fmt: skip


async def produce(bootstrap: str, messages: list[Message]) -> None:
    """One message after the other, 1 ms apart: their time order is the list's."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        start = int(time.time() * 1000) - 60_000
        for n, (topic, key, value, headers) in enumerate(messages):
            body = value if isinstance(value, bytes) else orjson.dumps(value)
            await producer.send_and_wait(
                topic, body, key=key.encode() if key else None, headers=headers, timestamp_ms=start + n
            )
    finally:
        await producer.stop()


def leadstreams(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agents.cli", *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


async def test_trace_finds_a_leads_messages_in_time_order_through_a_replay(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    s = uuid.uuid4().hex[:8]
    t = {"in": f"tr-{s}.in", "out": f"tr-{s}.out", "err": f"tr-{s}.err", "retry": f"tr-{s}.retry",
         "notify": f"tr-{s}.notify"}  # fmt: skip
    assert not any(topic_name_problem(name) for name in t.values())
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        f"version: 1\nname: traced\ntopics:\n  input: {t['in']}\n  enriched: ${{OUT_TOPIC:-{t['out']}}}\n"
        f"  errors: {t['err']}\n  retry: {t['retry']}\n  notifications: {t['notify']}\n"
        "settings: {key: '${A_SECRET_TRACE_DOES_NOT_NEED}'}\n"
    )
    deferred = RetryState(1, Source(t["in"], 0, 0), time.time(), "check: HTTP 503").headers()
    no_id = {"email": "anon@example.com"}
    t1 = {"id": "t1", "email": "t1@example.com"}
    gave_up = "gave up after 1 delayed retries: HTTP 503"
    record = {"context": {}, "flow": "traced", "step": "crm", "lead_id": "t1", "important": True,
              "idempotency_key": "k", "request": {"method": "POST", "url": "https://crm/x"},
              "input": {"topic": t["in"], "partition": 0, "offset": 3}, "queued_at": "x"}  # fmt: skip
    attempts = {"flow": "traced", "step": "crm", "lead_id": "t1", "attempt": 1, "result": "delivered",
                "http_status": 200, "requests": 1, "latency_ms": 3.0, "reason": None, "notification": {},
                "at": "x"}  # fmt: skip
    await produce(kafka_bootstrap, [
        (t["in"], "t1", t1, []),  # in/0/0
        (t["in"], None, no_id, []),  # in/0/1: its id is derived from where it is: u-1 here
        (t["in"], "other", {"id": "other"}, []),  # in/0/2
        (t["retry"] + ".5s", "t1", t1, deferred),
        (t["err"], "t1", event("t1", "error", gave_up, f"{t['in']}/0/0"), []),
        (t["err"], "u-1", event("u-1", "error", "HTTP 500", f"{t['in']}/0/1", no_id), []),  # err/0/1
        (t["err"], "other", event("other", "error", "HTTP 500", f"{t['in']}/0/2"), []),
        (t["in"], "t1", t1, [(REPLAYED_FROM, f"{t['err']}/0/0".encode())]),  # in/0/3
        (t["in"], None, no_id, [(REPLAYED_FROM, f"{t['err']}/0/1".encode())]),  # in/0/4
        (t["out"], "t1", event("t1", "success", None, f"{t['in']}/0/3"), []),
        (t["out"], "u-2", event("u-2", "success", None, f"{t['in']}/0/4", no_id), []),
        (t["notify"], "t1", record, []),
        (t["notify"] + ".results", "t1", attempts, []),
    ])  # fmt: skip

    traced = leadstreams("trace", "t1", str(flow), "--bootstrap", kafka_bootstrap)
    assert traced.returncode == 0, traced.stderr
    lines = traced.stdout.splitlines()
    where = [line.split()[1] for line in lines]
    assert where == [
        f"{t['in']}[0]@0", f"{t['retry']}.5s[0]@0", f"{t['err']}[0]@0", f"{t['in']}[0]@3", f"{t['out']}[0]@0",
        f"{t['notify']}[0]@0", f"{t['notify']}.results[0]@0",
    ], traced.stdout  # fmt: skip
    assert "key=t1 deferred attempt 1: check: HTTP 503" in lines[1]
    assert "key=t1 output error gave up after 1 delayed retries: HTTP 503" in lines[2]
    assert f"key=t1 input (replay of {t['err']}/0/0)" in lines[3]
    assert "key=t1 output success" in lines[4]
    assert "notification queued POST https://crm/x" in lines[5]
    assert "attempts delivered" in lines[6]
    assert "7 message(s) about t1 since " in traced.stderr and "13 read in" in traced.stderr

    anonymous = leadstreams("trace", "u-1", str(flow), "--json", "--bootstrap", kafka_bootstrap)
    found = [orjson.loads(line) for line in anonymous.stdout.splitlines()]
    assert [(f["topic"], f["offset"], f["role"]) for f in found] == [
        (t["in"], 1, "input"),
        (t["err"], 1, "output"),
        (t["in"], 4, f"input (replay of {t['err']}/0/1)"),
        (t["out"], 1, "output"),
    ]
    # (its first input is found at its event's `input`: it has no key or id to be found by)

    nobody = leadstreams("trace", "nobody", str(flow), "--since", "2h", "--bootstrap", kafka_bootstrap)
    assert nobody.returncode == 1 and "0 message(s) about nobody since" in nobody.stderr

    later = leadstreams("trace", "t1", str(flow), "--since", "2099-01-01", "--bootstrap", kafka_bootstrap)
    assert later.returncode == 1 and "(0 read in" in later.stderr

    flow.write_text(flow.read_text().replace(t["in"], f"tr-{s}.gone"))
    missing = leadstreams("trace", "t1", str(flow), "--bootstrap", kafka_bootstrap)
    assert missing.returncode == 3
    assert missing.stderr.strip().splitlines() == [f"error: no topic tr-{s}.gone at {kafka_bootstrap} "
                                                   "(a flow's worker creates its topics when it starts; or "
                                                   "this user may not describe it)"]  # fmt: skip
