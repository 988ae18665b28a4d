"""The worker and the CLI on the secured listeners of the local broker (with-kafka.sh
starts it --secured): 1,000 leads over SASL_SSL + SCRAM-SHA-512 with mutual TLS, and the
usual mistakes — a wrong password, an untrusted CA, a plaintext client on the TLS port —
each as one clear line and exit 3, quickly, with no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
from partner_api import create_partner_app

from agents.kafka_connection import KafkaConnection
from agents.kafka_io import Record, collect, ensure_topics, publish
from examples.support.process import ROOT, WorkerProcess, free_port, serve_app

pytestmark = pytest.mark.kafka
LEADS = 1000
DEMO_FLOW = ROOT / "examples" / "flows" / "demo.yaml"


@pytest.fixture(scope="module")
def secured_config() -> Path:
    """The SASL_SSL + SCRAM-SHA-512 + mutual TLS client properties with-kafka.sh wrote."""
    directory = os.environ.get("LEADSTREAMS_SECURED_CONFIG_DIR")
    if not directory:
        pytest.fail("LEADSTREAMS_SECURED_CONFIG_DIR is not set: run through `make test` (with-kafka.sh)")
    return Path(directory) / "client-sasl-ssl.properties"


def variant(config: Path, tmp_path: Path, name: str, **changes: str | None) -> Path:
    """A copy of a properties file with some keys changed (None: removed)."""
    lines = []
    for line in config.read_text().splitlines():
        key = line.split("=", 1)[0]
        if key in changes:
            if changes[key] is not None:
                lines.append(f"{key}={changes[key]}")
            continue
        lines.append(line)
    path = tmp_path / f"{name}.properties"
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_a_thousand_leads_over_sasl_ssl_scram_512_with_mutual_tls(
    secured_config: Path, tmp_path: Path
) -> None:
    kafka = KafkaConnection.resolve({}, str(secured_config), environ={})
    assert (kafka.security_protocol, kafka.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert kafka.ssl_certfile  # mutual TLS
    suffix = uuid.uuid4().hex[:8]
    topics = {kind: f"leads.{kind}.sec-{suffix}" for kind in ("incoming", "enriched", "errors")}
    flow = tmp_path / "flow.yaml"
    text = DEMO_FLOW.read_text()
    for kind, name in topics.items():
        text = text.replace(f"leads.{kind}", name)
    flow.write_text(text)
    api_key = "sec-key-" + uuid.uuid4().hex
    runner, url = await serve_app(create_partner_app(api_key))
    await ensure_topics(kafka, topics.values(), partitions=3)
    worker = WorkerProcess(
        flow, kafka.bootstrap, free_port(), tmp_path / "worker.log",
        env={"INTERNAL_API_KEY": api_key, "PARTNER_URL": url, "PARTNER_ALLOW_LOOPBACK": "true"},
        args=["--kafka-config", str(secured_config), "--group-id", f"sec-{suffix}"],
    )  # fmt: skip
    worker.start()
    try:
        leads = [
            (f"s{n}".encode(), orjson.dumps({"id": f"s{n}", "email": f"s{n}@mail.example"}))
            for n in range(LEADS)
        ]
        await publish(kafka, topics["incoming"], leads)

        def done(records: list[Record]) -> bool:
            assert worker.alive, worker.log_tail()
            return len(records) >= LEADS

        records = await collect(kafka, [topics["enriched"], topics["errors"]], done, timeout=180)
        ids = {orjson.loads(r.value)["id"] for r in records}
        assert ids == {f"s{n}" for n in range(LEADS)}, f"{len(ids)} of {LEADS}\n{worker.log_tail()}"
        log = (tmp_path / "worker.log").read_text()
        password = kafka.sasl_password or ""
        assert password and password not in log
    finally:
        worker.stop()
        await runner.cleanup()


def leadstreams(*args: str, timeout: float = 60) -> tuple[int, str, float]:
    started = time.monotonic()
    # Only the properties file says where and how (LEADSTREAMS_BOOTSTRAP would win over it).
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEADSTREAMS_")}
    command = [sys.executable, "-m", "agents.cli", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                            env={**env, "INTERNAL_API_KEY": "k" * 8})  # fmt: skip
    return result.returncode, result.stderr + result.stdout, time.monotonic() - started


@pytest.mark.parametrize(
    ("case", "changes", "expected"),
    [
        (
            "wrong-password",
            {"sasl.jaas.config": 'org.apache.kafka.common.security.scram.ScramLoginModule required '
                                 'username="alice" password="not-the-password";'},
            "authentication failed for user 'alice' with SCRAM-SHA-512",
        ),
        ("untrusted-ca", {"ssl.truststore.location": "UNTRUSTED"},
         "TLS: the broker's certificate is not trusted"),
        (
            "plaintext-on-tls",
            dict.fromkeys(("security.protocol", "sasl.mechanism", "sasl.jaas.config", "ssl.truststore.type",
                           "ssl.truststore.location", "ssl.keystore.type", "ssl.keystore.location")),
            "the broker closed the connection; is it a TLS or SASL listener?",
        ),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", ["worker", "publish", "tail"])
def test_a_misconfigured_connection_is_one_clear_line(
    secured_config: Path,
    tmp_path: Path,
    case: str,
    changes: dict[str, str | None],
    expected: str,
    command: str,
) -> None:
    if changes.get("ssl.truststore.location") == "UNTRUSTED":
        changes = {**changes, "ssl.truststore.location": os.environ["LEADSTREAMS_SECURED_UNTRUSTED_CA"]}
    config = variant(secured_config, tmp_path, case, **changes)
    leads = tmp_path / "leads.jsonl"
    leads.write_text('{"id": "x"}\n')
    args = {
        "worker": ["worker", str(DEMO_FLOW), "--web-port", str(free_port())],
        "publish": ["publish", "leads.none", str(leads)],
        "tail": ["tail", "leads.none", "-n", "1"],
    }[command]
    code, output, elapsed = leadstreams(*args, "--kafka-config", str(config))
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 3, output
    assert len(lines) == 1 and lines[0].startswith("error: Kafka at "), output
    assert expected in lines[0]
    assert "Traceback" not in output
    assert elapsed < 30
