"""The hand-written baseline: the practical ceiling for Python doing the bench flow's work.

aiokafka consumer (``getmany``) -> one POST per lead, concurrently under a semaphore,
through one shared aiohttp session -> set the mapped field and the outcome like the
flow does -> produce every output of the batch, await their delivery -> commit.
No templates, no policies, no metrics: just the work, and the worker's size rules (an
input over 1 MiB or an output over 1,000,000 bytes goes to errors as a short event).
Runs as its own process:

    python examples/bench/baseline.py --bootstrap HOST:PORT --topic PREFIX --group G \
        --url http://127.0.0.1:PORT --concurrency 100
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from agents.partitioner import partition_for
from streams.events import MAX_LEAD_BYTES, MAX_OUTPUT_BYTES

FLOW = "bench-baseline"
STEP = "score"


def kafka_partition(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's default partitioner with the worker's murmur2 in C: the same choice, faster."""
    return partition_for(key, all_partitions)


def now_text() -> str:
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Baseline:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.url = args.url.rstrip("/") + "/score"
        self.enriched = f"{args.topic}.enriched"
        self.errors = f"{args.topic}.errors"
        self.semaphore = asyncio.Semaphore(args.concurrency)
        self.stopping = asyncio.Event()

    async def call(
        self, session: aiohttp.ClientSession, record: ConsumerRecord[bytes, bytes]
    ) -> tuple[str, bytes]:
        """One lead: the partner call and the output event; (topic, value)."""
        received_at = now_text()
        if len(record.value or b"") > MAX_LEAD_BYTES:  # as the worker: too large to take
            reason = f"message of {len(record.value or b'')} bytes exceeds the {MAX_LEAD_BYTES}-byte limit"
            return self.errors, self.short_error(record, reason, received_at)
        lead: dict[str, Any] = orjson.loads(record.value or b"{}")
        lead_id = str(lead.get("id"))
        body = orjson.dumps({"id": lead_id, "email": lead.get("email")})
        headers = {"Content-Type": "application/json", "Idempotency-Key": f"{lead_id}:{STEP}"}
        started = time.monotonic()
        async with self.semaphore, session.post(self.url, data=body, headers=headers) as response:
            status = response.status
            payload = await response.read()
        duration_ms = round((time.monotonic() - started) * 1000, 3)
        if 200 <= status < 300:
            answer = orjson.loads(payload)
            lead["score"] = answer.get("score")
            outcome = "success" if answer.get("accepted") else "failure"
            reason = None if outcome == "success" else f"{STEP}: {answer.get('reason')}"
        else:
            outcome, reason = "error", f"{STEP}: HTTP {status}"
        event: dict[str, Any] = {
            "id": lead_id,
            "flow": FLOW,
            "outcome": outcome,
            "reason": reason,
            "lead": lead,
            "steps": [{"name": STEP, "outcome": outcome, "reason": reason, "http_status": status,
                       "attempts": 1, "duration_ms": duration_ms, "source": "primary"}],
            "received_at": received_at,
            "completed_at": now_text(),
            "input": {"topic": record.topic, "partition": record.partition, "offset": record.offset},
        }  # fmt: skip
        if outcome == "error":
            event["error"] = reason
        value = orjson.dumps(event)
        if len(value) > MAX_OUTPUT_BYTES:  # as the worker: Kafka would refuse it
            reason = f"output of {len(value)} bytes is too large"
            return self.errors, self.short_error(record, reason, received_at)
        return (self.errors if outcome == "error" else self.enriched), value

    @staticmethod
    def short_error(record: ConsumerRecord[bytes, bytes], reason: str, received_at: str) -> bytes:
        return orjson.dumps({
            "id": f"{record.topic}/{record.partition}/{record.offset}", "flow": FLOW, "outcome": "error",
            "reason": reason, "error": reason, "received_at": received_at, "completed_at": now_text(),
            "input": {"topic": record.topic, "partition": record.partition, "offset": record.offset},
        })  # fmt: skip

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            f"{self.args.topic}.in",
            bootstrap_servers=self.args.bootstrap,
            group_id=self.args.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=self.args.bootstrap, acks="all", partitioner=kafka_partition
        )
        connector = aiohttp.TCPConnector(limit=self.args.concurrency, keepalive_timeout=30)
        timeout = aiohttp.ClientTimeout(total=5)
        await consumer.start()
        await producer.start()
        try:
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                while not self.stopping.is_set():
                    batch = await consumer.getmany(timeout_ms=100, max_records=self.args.batch_size)
                    records = [record for part in batch.values() for record in part]
                    if not records:
                        continue
                    outputs = await asyncio.gather(*(self.call(session, record) for record in records))
                    futures = [
                        await producer.send(topic, value, key=record.key)
                        for (topic, value), record in zip(outputs, records, strict=True)
                    ]
                    await asyncio.gather(*futures)
                    await consumer.commit()
        finally:
            await consumer.stop()
            await producer.stop()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True, help="topic prefix: PREFIX.in -> PREFIX.enriched/.errors")
    parser.add_argument("--group", required=True)
    parser.add_argument("--url", required=True, help="the partner's base URL")
    parser.add_argument("--concurrency", type=int, default=100, help="requests in flight")
    parser.add_argument("--batch-size", type=int, default=500, help="records per getmany")
    return parser.parse_args()


async def main() -> None:
    baseline = Baseline(parse_args())
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, baseline.stopping.set)
    await baseline.run()


if __name__ == "__main__":
    asyncio.run(main())
