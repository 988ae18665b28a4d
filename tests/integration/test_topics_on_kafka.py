"""Topics the worker creates take a replication factor and configs; a worker that finds
any of its topics with fewer partitions than asked says so at start, one WARNING each."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from agents.kafka_io import ensure_topics, partition_counts, publish
from examples.support.process import WorkerProcess, free_port, wait_for

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]


async def topic_config(bootstrap: str, topic: str, key: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {key: None})]
        )
    finally:
        await admin.close()
    return dict((entry[0], entry[1]) for entry in response.resources[0][4])[key]


async def test_created_topics_get_the_configs_and_the_brokers_replication_factor(
    kafka_bootstrap: str,
) -> None:
    name = f"topics.{uuid.uuid4().hex[:8]}"
    created = await ensure_topics(kafka_bootstrap, [name], 3, configs={"retention.ms": "3600000"})
    assert created == [name]
    assert (await partition_counts(kafka_bootstrap, [name])) == {name: 3}
    assert await topic_config(kafka_bootstrap, name, "retention.ms") == "3600000"
    assert await ensure_topics(kafka_bootstrap, [name], 3) == []  # exists: left alone


async def test_every_topic_with_fewer_partitions_is_named_at_start(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Topics auto-created by publishing before the first worker start have 1 partition:
    one WARNING per such topic (input and errors here; enriched is created with 4)."""
    suffix = uuid.uuid4().hex[:8]
    flow = tmp_path / "flow.yaml"
    text = (ROOT / "examples" / "flows" / "demo.yaml").read_text()
    flow.write_text(text.replace("leads.", f"leads-{suffix}."))
    for topic in (f"leads-{suffix}.incoming", f"leads-{suffix}.errors"):
        await publish(kafka_bootstrap, topic, [(b"k", b"{}")])  # auto-created: 1 partition
    log = tmp_path / "worker.log"
    worker = WorkerProcess(flow, kafka_bootstrap, free_port(), log, env={"INTERNAL_API_KEY": "k" * 8},
                           args=["--partitions", "4"])  # fmt: skip
    worker.start()
    try:
        await wait_for(lambda: log.read_text().count("fewer than --partitions") >= 2, 60, "the warnings")
    finally:
        worker.stop()
    lines = [line for line in log.read_text().splitlines() if "fewer than --partitions" in line]
    assert len(lines) == 2, lines
    incoming, errors = sorted(lines, key=lambda line: "errors" in line)
    assert " WARNING leadstreams.worker: " in incoming
    assert f"leads-{suffix}.incoming has 1 partition(s), fewer than --partitions 4: at most 1 " in incoming
    assert f"--alter --topic leads-{suffix}.incoming --partitions 4, or pass --partitions 1" in incoming
    assert f"topic leads-{suffix}.errors has 1 partition(s)" in errors
    assert f"leads-{suffix}.enriched" not in " ".join(lines)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--topic-config", "no.such.config=1"], "InvalidConfigurationError: topic t-"),
        (["--replication-factor", "3"], "InvalidReplicationFactorError: topic t-"),
    ],
)
def test_topics_kafka_refuses_to_create_are_one_line_and_exit_3(
    kafka_bootstrap: str, tmp_path: Path, args: list[str], expected: str
) -> None:
    """aiokafka returns per-topic errors without raising: they must not pass unnoticed."""
    suffix = uuid.uuid4().hex[:8]
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "version: 1\nname: refused\n"
        f"topics: {{input: t-{suffix}.in, enriched: t-{suffix}.out, errors: t-{suffix}.err}}\n"
        "integrations: {p: {base_url: 'http://127.0.0.1:1'}}\n"
        "steps: [{name: s, integration: p, request: {url: /x}}]\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "agents.cli", "worker", str(flow), "--bootstrap", kafka_bootstrap, *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    assert result.returncode == 3, lines
    assert len(lines) == 1 and lines[0].startswith("error: Kafka refused to create the flow's topics"), lines
    assert expected in lines[0]
