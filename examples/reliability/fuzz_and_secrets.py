"""The input and secrets scenarios of `make reliability`: `fuzz` (unusable inputs, over
the secured listener when there is one) and the secrets scan over every run.
"""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

import orjson
from faulty_partner import Faults, create_faulty_partner
from group_run import Run, Sizes, fuzzed_inputs
from lead_tally import Progress, Tally, track

from agents.kafka_connection import KafkaConnection
from agents.kafka_io import publish
from examples.support.process import serve_app


async def scenario_fuzz(bootstrap: str, workdir: Path, sizes: Sizes) -> tuple[str, Run, Tally]:
    """Unusable inputs all land on the errors topic with their raw bytes; the worker lives.
    Over the secured listener (SASL_SSL, SCRAM-SHA-512, mutual TLS) when the broker has one,
    so the secrets scan also looks for the Kafka password."""
    secured = os.environ.get("LEADSTREAMS_SECURED_CONFIG_DIR")
    if secured and os.environ.get("LEADSTREAMS_SECURED_BOOTSTRAP"):
        config = Path(secured) / "client-sasl-ssl.properties"
        run = Run(os.environ["LEADSTREAMS_SECURED_BOOTSTRAP"], workdir, sizes.rate, Faults(0, 0, 0, 0),
                  kafka_config=config)  # fmt: skip
    else:
        run = Run(bootstrap, workdir, sizes.rate, Faults(0, 0, 0, 0))
    partner = create_faulty_partner(run.api_key, run.faults)
    runner, url = await serve_app(partner)
    tally = Tally()
    payloads = fuzzed_inputs(sizes.fuzz)
    progress = Progress("fuzz", sizes.fuzz, tally, run)
    try:
        async with progress.reporting():
            await run.start(url)
            tracking = asyncio.ensure_future(track(run, sizes.fuzz, sizes.deadline, tally))
            await publish(run.kafka, run.topics[0], ((None, payload) for payload in payloads))
            progress.enter("waiting for every input to have an output")
            await tracking
            alive = run.processes[0].alive
    finally:
        run.stop()
        await runner.cleanup()
    inputs = {(r.partition, r.offset): r.value for r in tally.records if r.topic == run.topics[0]}
    preserved = 0
    for record in tally.records:
        if record.topic == run.topics[2]:
            event = orjson.loads(record.value)
            source = (event["input"]["partition"], event["input"]["offset"])
            preserved += event.get("lead") is None and base64.b64decode(event["raw"]) == inputs.get(source)
    on_errors = tally.outcomes.get("errors:error", 0)
    line = (
        f"fuzz: in={len(tally.inputs)} errors={on_errors} raw_preserved={preserved} lost={tally.lost} "
        f"worker_alive={alive} kafka={KafkaConnection.of(run.kafka).security_protocol}"
    )
    ok = tally.lost == 0 and preserved == len(payloads) and on_errors == len(payloads) and alive
    return ("" if ok else "FAILED ") + line, run, tally


def scenario_secrets(runs: list[tuple[Run, Tally]], broker_log: Path | None = None) -> str:
    """Every message of every topic, every worker log and the broker's log, searched for
    every secret: the partner API keys and the Kafka password of the secured listener."""
    hits = scanned = log_bytes = 0
    kafka_password = os.environ.get("LEADSTREAMS_SECURED_PASSWORD", "").encode()
    secrets = [run.api_key.encode() for run, _ in runs] + ([kafka_password] if kafka_password else [])
    broker = broker_log.read_bytes() if broker_log and broker_log.exists() else b""
    log_bytes += len(broker)
    hits += sum(broker.count(secret) for secret in secrets)
    for run, tally in runs:
        for record in tally.records:
            scanned += 1
            hits += any(secret in record.value or secret in (record.key or b"") for secret in secrets)
        for worker in run.processes:
            text = worker.log_path.read_bytes() if worker.log_path.exists() else b""
            log_bytes += len(text)
            hits += sum(text.count(secret) for secret in secrets)
    line = f"secrets: kinds={'partner keys, Kafka password' if kafka_password else 'partner keys'} "
    return ("" if hits == 0 else "FAILED ") + line + f"messages={scanned} log_bytes={log_bytes} hits={hits}"
