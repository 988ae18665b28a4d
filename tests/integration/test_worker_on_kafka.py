"""The worker on a real Apache Kafka broker: every lead ends on exactly the expected topic."""

from __future__ import annotations

import base64
from collections import Counter

import aiohttp
import jsonschema
import orjson
import pytest
from leads import SampleLead, sample_leads
from partner_api import REQUESTS
from worker_harness import WorkerRun

import schemas
from agents.kafka_io import Record, collect, publish
from examples.support.process import wait_for

pytestmark = pytest.mark.kafka
LEADS = 600
MALFORMED = 20


async def test_every_lead_lands_once_on_the_expected_topic(worker: WorkerRun) -> None:
    leads = sample_leads(LEADS, run_id=worker.suffix, malformed=MALFORMED)
    topics = worker.topics
    await publish(worker.bootstrap, topics["incoming"], ((lead.key, lead.value) for lead in leads))

    def all_accounted(records: list[Record]) -> bool:
        worker.assert_alive()
        return sum(r.topic != topics["incoming"] for r in records) >= LEADS

    records = await collect(worker.bootstrap, list(topics.values()), all_accounted, timeout=180)
    inputs = {(r.partition, r.offset): r for r in records if r.topic == topics["incoming"]}
    outputs = [r for r in records if r.topic != topics["incoming"]]
    assert len(inputs) == LEADS
    assert len(outputs) == LEADS, f"{len(outputs)} of {LEADS} outputs\n{worker.log_tail()}"

    validator = jsonschema.Draft202012Validator(schemas.load("event"))
    by_id: dict[str, tuple[str, dict]] = {}
    raw_seen: Counter[bytes] = Counter()
    for record in outputs:
        event = orjson.loads(record.value)
        validator.validate(event)
        assert worker.api_key.encode() not in record.value
        source = inputs[(event["input"]["partition"], event["input"]["offset"])]
        if event["lead"] is None:  # unusable input: raw bytes preserved
            assert record.topic == topics["errors"]
            assert base64.b64decode(event["raw"]) == source.value
            raw_seen[source.value] += 1
        else:
            assert event["id"] not in by_id, f"duplicate output for {event['id']}"
            by_id[event["id"]] = (record.topic, event)
            assert record.key == event["id"].encode()

    expected_malformed = Counter(lead.value for lead in leads if lead.lead_id is None)
    assert raw_seen == expected_malformed
    assert_each_lead_on_its_topic(leads, by_id, topics)

    # Skipped leads (no email) never reached the partner; all others did once.
    calls = sum(1 for lead in leads if lead.lead_id and lead.outcome != "skip")
    assert worker.partner[REQUESTS]["total"] == calls
    await assert_metrics_and_ready(worker)


def assert_each_lead_on_its_topic(
    leads: list[SampleLead], by_id: dict[str, tuple[str, dict]], topics: dict[str, str]
) -> None:
    """Each usable lead's output: on the topic its outcome calls for, with that outcome's fields."""
    for lead in leads:
        if lead.lead_id is None:
            continue
        topic, event = by_id[lead.lead_id]
        assert topic == topics[lead.destination if lead.destination == "errors" else "enriched"]
        assert event["outcome"] == lead.outcome, event
        if lead.outcome == "success":
            assert event["lead"]["blacklisted"] is False
            assert isinstance(event["lead"]["risk_score"], int)
            assert event["steps"][0]["http_status"] == 200
        if lead.outcome == "failure":
            assert event["reason"].startswith("check_blacklist: domain ")
        if lead.outcome == "error":
            assert event["error"] == "check_blacklist: HTTP 422: invalid email"


async def assert_metrics_and_ready(worker: WorkerRun) -> None:
    """/metrics counts every lead written; /ready answers 200 ready."""
    topics = worker.topics
    metrics = await scrape(worker.web_port)
    assert (
        f'leadstreams_leads_written_total{{flow="lead-validation",topic="{topics["enriched"]}"}}' in metrics
    )
    written = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("leadstreams_leads_written_total{")
    )
    assert written == LEADS
    assert "leadstreams_request_duration_seconds_bucket" in metrics

    ready_url = f"http://127.0.0.1:{worker.web_port}/ready"
    async with aiohttp.ClientSession() as session, session.get(ready_url) as ready:
        assert ready.status == 200, await ready.text()  # in its group, the broker answering
        assert (await ready.json())["status"] == "ready"


async def scrape(port: int) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        assert response.status == 200
        return await response.text()


async def test_restarted_worker_resumes_after_its_committed_output(worker: WorkerRun) -> None:
    """Offsets are committed for written leads: a clean restart replays nothing and
    processes what arrived while the worker was down."""
    topics = worker.topics
    first = sample_leads(200, run_id=f"{worker.suffix}a", malformed=0)
    second = sample_leads(100, run_id=f"{worker.suffix}b", malformed=0, seed=8)
    await publish(worker.bootstrap, topics["incoming"], ((lead.key, lead.value) for lead in first))
    await outputs_until(worker, {lead.lead_id for lead in first})
    assert worker.stop() == 0, worker.log_tail()

    await publish(worker.bootstrap, topics["incoming"], ((lead.key, lead.value) for lead in second))
    worker.start()
    ids = await outputs_until(worker, {lead.lead_id for lead in first + second})
    duplicates = [lead_id for lead_id, count in Counter(ids).items() if count > 1]
    assert duplicates == []


async def outputs_until(worker: WorkerRun, wanted: set[str | None]) -> list[str]:
    """Ids of all outputs so far, read until every wanted id is among them."""
    out_topics = [worker.topics["enriched"], worker.topics["errors"]]
    ids: list[str] = []

    def seen(record: Record) -> None:
        ids.append(orjson.loads(record.value)["id"])

    def done(_: list[Record]) -> bool:
        worker.assert_alive()
        return wanted <= set(ids)

    await collect(worker.bootstrap, out_topics, done, timeout=120, on_record=seen)
    assert wanted <= set(ids), f"missing {len(wanted - set(ids))} outputs\n{worker.log_tail()}"
    return ids


@pytest.mark.parametrize("partner_delay", [1.0])
async def test_shutdown_mid_batch_loses_no_lead(worker: WorkerRun) -> None:
    """SIGTERM while a batch waits on a slow partner: the batch is finished and
    written before its offsets are committed, or replayed after restart."""
    leads = sample_leads(150, run_id=worker.suffix, malformed=0)
    await publish(worker.bootstrap, worker.topics["incoming"], ((lead.key, lead.value) for lead in leads))
    requests = worker.partner[REQUESTS]
    await wait_for(lambda: requests["total"] > 0, 60, "the first partner request")
    assert worker.stop() == 0, worker.log_tail()
    worker.start()
    await outputs_until(worker, {lead.lead_id for lead in leads})


async def test_outputs_larger_than_kafka_takes_do_not_hold_their_partition(worker: WorkerRun) -> None:
    """An unusable 900 kB message (1.2 MB base64) and a 1 MB lead (its event is larger
    still) were refused by Kafka on every attempt until the worker exited, and again after
    each restart: the partition stood still. They go to errors as short events now, and
    the lead after them on the same partition is processed."""
    topics = worker.topics
    blob = bytes(range(256)) * 3600
    big = orjson.dumps({"id": f"big-{worker.suffix}", "email": "ann@example.com", "notes": "n" * 1_000_000})
    small_id = f"small-{worker.suffix}"
    small = orjson.dumps({"id": small_id, "email": "bob@example.com"})
    await publish(worker.bootstrap, topics["incoming"], [(b"same", blob), (b"same", big), (b"same", small)],
                  max_request_size=4 * 1024 * 1024)  # fmt: skip
    records: list[Record] = []

    def done(_: list[Record]) -> bool:
        worker.assert_alive()
        return len(records) >= 3

    await collect(worker.bootstrap, [topics["enriched"], topics["errors"]], done, timeout=120,
                  on_record=records.append)  # fmt: skip
    events = {orjson.loads(r.value)["input"]["offset"]: (r.topic, orjson.loads(r.value)) for r in records}
    assert len(records) == 3, worker.log_tail()
    (blob_topic, blob_event), (big_topic, big_event), (small_topic, small_event) = (
        events[offset] for offset in sorted(events)
    )
    assert blob_topic == big_topic == topics["errors"]
    assert blob_event["raw_bytes"] == len(blob) and blob.startswith(base64.b64decode(blob_event["raw"]))
    assert "not valid JSON" in blob_event["reason"]
    assert big_event["output_bytes"] > 1_000_000 and big_event["steps"][0]["http_status"] == 200
    assert small_topic == topics["enriched"] and small_event["id"] == small_id
