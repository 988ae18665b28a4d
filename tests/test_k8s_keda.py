"""deploy/k8s/examples/keda: KEDA's Kafka trigger scales the worker on
its group's lag on the flow's input topic, capped at the partition count, and reaches Kafka with the
worker's own credentials."""

from __future__ import annotations

from pathlib import Path

from k8s_helpers import (
    K8S,
    KEDA_SASL,
    arg,
    base_flow,
    example_secrets,
    one,
    rendered,
    worker_container,
    worker_defaults,
)
from prometheus_client import CollectorRegistry

from agents.app import WorkerOptions, create_app

# --- KEDA ---------------------------------------------------------------------------------


def test_keda_scales_the_worker_on_its_groups_lag_on_the_input_topic(tmp_path: Path) -> None:
    docs = rendered("examples/keda")
    deployment = one(docs, "Deployment")
    scaled = one(docs, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert scaled["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    args = worker_container(docs)["args"]
    settings = example_secrets()["leadstreams-settings"]
    flow = base_flow(settings)
    app = create_app(
        flow,
        WorkerOptions(kafka="127.0.0.1:1", data_dir=str(tmp_path), group_id=arg(args, "--group-id")),
        CollectorRegistry(),
    )
    assert meta["consumerGroup"] == app.conf.id  # the group id is the Faust app id
    assert meta["topic"] == flow.topics.input
    assert meta["offsetResetPolicy"] == app.conf.consumer_auto_offset_reset
    env_names = {variable["name"] for variable in worker_container(docs)["env"]}
    assert meta["bootstrapServersFromEnv"] in env_names
    max_in_flight = int(arg(args, "--max-in-flight", worker_defaults()["max_in_flight"]))
    assert int(meta["lagThreshold"]) > max_in_flight, "a worker keeping up holds max-in-flight uncommitted"
    assert meta.get("allowIdleConsumers", "false") == "false"


def test_keda_is_capped_at_the_input_partition_count() -> None:
    scaled = one(rendered("examples/keda"), "ScaledObject")
    args = worker_container(rendered("examples/keda"))["args"]
    partitions = int(arg(args, "--partitions", worker_defaults()["partitions"]))
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"] == partitions
    text = (K8S / "examples" / "keda" / "scaledobject.yaml").read_text()
    assert "Capped at the input topic's partition count" in text


def test_keda_talks_to_kafka_like_the_worker() -> None:
    docs = rendered("examples/keda")
    scaled, auth = one(docs, "ScaledObject"), one(docs, "TriggerAuthentication")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    kafka = example_secrets()["leadstreams-kafka"]
    protocol = kafka["security-protocol"]
    assert trigger["metadata"]["tls"] == ("enable" if protocol in ("SSL", "SASL_SSL") else "disable")
    expected_sasl = KEDA_SASL[kafka["sasl-mechanism"]] if protocol.startswith("SASL_") else "none"
    assert trigger["metadata"]["sasl"] == expected_sasl
    refs = {ref["parameter"]: (ref["name"], ref["key"]) for ref in auth["spec"]["secretTargetRef"]}
    env = {
        v["name"]: v["valueFrom"]["secretKeyRef"] for v in worker_container(docs)["env"] if "valueFrom" in v
    }
    as_worker = {
        "username": env["LEADSTREAMS_KAFKA_SASL_USERNAME"],
        "password": env["LEADSTREAMS_KAFKA_SASL_PASSWORD"],
    }
    for parameter, ref in as_worker.items():
        assert refs[parameter] == (ref["name"], ref["key"]), parameter
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (ca_volume,) = [v for v in pod["volumes"] if v["name"] == "kafka-tls"]
    (ca_item,) = ca_volume["secret"]["items"]
    assert refs["ca"] == (ca_volume["secret"]["secretName"], ca_item["key"])
