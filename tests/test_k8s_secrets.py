"""deploy/k8s's Secrets reach the code that reads them.

A pod's environment and mounted files are rebuilt from the rendered manifests and the
example Secrets (deploy/k8s/secrets.example.yaml), then given to the flow loader and
KafkaConnection.resolve: SASL_SSL with the mounted CA, no CA file, plaintext, mTLS."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from k8s_helpers import (
    OVERLAYS,
    SECRETS,
    WORKER_VARIABLES,
    base_flow,
    example_secrets,
    objects,
    one,
    rendered,
    worker_container,
)

from agents.kafka_connection import KafkaConfigError, KafkaConnection
from streams.loader import load_flow

# --- a pod, rebuilt from the manifests -------------------------------------------------------


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A throwaway CA and a client certificate and key it signed (PEM text)."""
    where = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=where)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=test-ca")
    run("req", *ec, "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=leadstreams")
    run("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "tls.crt", "-days", "2")  # fmt: skip
    return {name: (where / name).read_text() for name in ("ca.crt", "tls.crt", "tls.key")}


def filled_secrets(pems: dict[str, str], mtls: bool = False) -> dict[str, dict[str, str]]:
    """The example Secrets with real PEMs in place of the placeholders."""
    secrets = example_secrets()
    secrets["leadstreams-kafka"]["ca.crt"] = pems["ca.crt"]
    if mtls:
        secrets["leadstreams-kafka"]["tls.crt"] = pems["tls.crt"]
        secrets["leadstreams-kafka"]["tls.key"] = pems["tls.key"]
    return secrets


def start_pod(docs: list[dict[str, Any]], secrets: dict[str, dict[str, str]], root: Path) -> dict[str, str]:
    """What the kubelet would give the worker container: its environment (variables
    naming files under a mount point rewritten into ``root``) and its mounted files
    (under ``root``). Fails where the kubelet would refuse to start the container."""
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    container = worker_container(docs)
    configmaps = {cm["metadata"]["name"]: cm["data"] for cm in objects(docs, "ConfigMap")}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source["secretRef"]
        assert ref["name"] in secrets or ref.get("optional"), f"envFrom: no Secret {ref['name']}"
        env.update(secrets.get(ref["name"], {}))
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
            continue
        ref = variable["valueFrom"]["secretKeyRef"]
        value = secrets.get(ref["name"], {}).get(ref["key"])
        if value is None:
            assert ref.get("optional"), f"{variable['name']}: Secret {ref['name']} has no key {ref['key']}"
            env.pop(variable["name"], None)
            continue
        env[variable["name"]] = value
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    mounts = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        mounts[mount["mountPath"]] = target
        if "emptyDir" in volume:
            continue
        if "configMap" in volume:
            source, data = volume["configMap"], configmaps.get(volume["configMap"]["name"])
        else:
            source, data = volume["secret"], secrets.get(volume["secret"]["secretName"])
        if data is None:
            assert source.get("optional"), f"volume {mount['name']}: nothing to mount"
            continue
        for item in source.get("items") or [{"key": key, "path": key} for key in data]:
            if item["key"] not in data:
                assert source.get("optional"), f"volume {mount['name']}: no key {item['key']}"
                continue
            (target / item["path"]).write_text(data[item["key"]])
    for name, value in env.items():
        for mount_path, target in mounts.items():
            if value.startswith(mount_path.rstrip("/") + "/"):
                env[name] = str(target / value[len(mount_path) :].lstrip("/"))
    return env


def container_path(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


# --- Secrets and the Kafka connection -----------------------------------------------------------


def test_every_secret_reference_is_documented_in_the_example_secrets() -> None:
    text = SECRETS.read_text()
    secrets = example_secrets()
    for overlay in OVERLAYS:
        docs = rendered(overlay)
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        container = worker_container(docs)
        refs = [v["valueFrom"]["secretKeyRef"] for v in container.get("env", []) if "valueFrom" in v]
        refs += [
            {"name": v["secret"]["secretName"], "key": item["key"], "optional": v["secret"].get("optional")}
            for v in pod["volumes"] if "secret" in v for item in v["secret"].get("items", [])
        ]  # fmt: skip
        refs += [
            {"name": ref["name"], "key": ref["key"], "optional": True}
            for auth in objects(docs, "TriggerAuthentication") for ref in auth["spec"]["secretTargetRef"]
        ]  # fmt: skip
        for ref in refs:
            assert ref["name"] in secrets, f"{overlay}: Secret {ref['name']} is not in {SECRETS.name}"
            if ref.get("optional"):
                assert f"{ref['key']}:" in text, f"{overlay}: key {ref['key']} is not documented"
            else:
                assert ref["key"] in secrets[ref["name"]], f"{overlay}: {ref['name']} needs {ref['key']}"
        for source in container.get("envFrom", []):
            assert source["secretRef"]["name"] in secrets


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_container_sets_only_variables_the_worker_reads(overlay: str) -> None:
    container = worker_container(rendered(overlay))
    names = {variable["name"] for variable in container.get("env", [])}
    unknown = {name for name in names if name.startswith("LEADSTREAMS_")} - WORKER_VARIABLES
    assert not unknown, f"{overlay}: the worker reads no {sorted(unknown)}"
    assert {
        "LEADSTREAMS_BOOTSTRAP",
        "LEADSTREAMS_KAFKA_SECURITY_PROTOCOL",
        "LEADSTREAMS_KAFKA_SASL_MECHANISM",
        "LEADSTREAMS_KAFKA_SASL_USERNAME",
        "LEADSTREAMS_KAFKA_SASL_PASSWORD",
    } <= names
    by_name = {variable["name"]: variable for variable in container["env"]}
    password = by_name["LEADSTREAMS_KAFKA_SASL_PASSWORD"]
    assert "value" not in password and password["valueFrom"]["secretKeyRef"]["name"] == "leadstreams-kafka"


def test_a_base_pod_connects_with_sasl_ssl_and_the_mounted_ca(tmp_path: Path, pems: dict[str, str]) -> None:
    secrets = filled_secrets(pems)
    env = start_pod(rendered(), secrets, tmp_path)
    kafka = secrets["leadstreams-kafka"]
    connection = KafkaConnection.resolve({}, None, environ=env)
    assert connection.bootstrap == kafka["bootstrap"]
    assert (connection.security_protocol, connection.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (connection.sasl_username, connection.sasl_password) == (
        kafka["sasl-username"],
        kafka["sasl-password"],
    )
    assert connection.ssl_cafile == str(container_path(tmp_path, "/etc/leadstreams/kafka/ca.crt"))
    assert Path(connection.ssl_cafile).read_text() == pems["ca.crt"]
    assert connection.ssl_certfile is None
    options = connection.client_options()  # builds the TLS context from the mounted CA
    assert options["ssl_context"].verify_mode.name == "CERT_REQUIRED"
    # The flow, mounted from the ConfigMap where the args name it, loads with the pod's env.
    args = worker_container(rendered())["args"]
    assert base_flow(env).name == load_flow(container_path(tmp_path, args[1]), env).name


def test_without_a_ca_in_the_secret_the_base_refuses_to_start_and_no_ca_file_does_not(
    tmp_path: Path, pems: dict[str, str]
) -> None:
    secrets = filled_secrets(pems)
    del secrets["leadstreams-kafka"]["ca.crt"]
    env = start_pod(rendered(), secrets, tmp_path / "base")  # the optional mount: no error here
    with pytest.raises(KafkaConfigError, match=r"ssl-cafile .*/ca\.crt: no such file"):
        KafkaConnection.resolve({}, None, environ=env)
    env = start_pod(rendered("examples/no-ca-file"), secrets, tmp_path / "no-ca-file")
    assert "LEADSTREAMS_KAFKA_SSL_CAFILE" not in env
    connection = KafkaConnection.resolve({}, None, environ=env)
    assert (connection.security_protocol, connection.ssl_cafile) == ("SASL_SSL", None)
    assert connection.client_options()["ssl_context"] is not None  # the system CAs


def test_a_plaintext_cluster_needs_only_the_bootstrap_key(tmp_path: Path) -> None:
    secrets = example_secrets()
    secrets["leadstreams-kafka"] = {"bootstrap": "kafka.kafka.svc:9092"}
    env = start_pod(rendered("examples/no-ca-file"), secrets, tmp_path)
    connection = KafkaConnection.resolve({}, None, environ=env)
    assert (connection.bootstrap, connection.security_protocol) == ("kafka.kafka.svc:9092", "PLAINTEXT")
    assert "ssl_context" not in connection.client_options()


def test_an_mtls_pod_presents_the_mounted_client_certificate(tmp_path: Path, pems: dict[str, str]) -> None:
    secrets = filled_secrets(pems, mtls=True)
    env = start_pod(rendered("examples/mtls"), secrets, tmp_path)
    connection = KafkaConnection.resolve({}, None, environ=env)
    assert Path(connection.ssl_certfile or "").read_text() == pems["tls.crt"]
    assert Path(connection.ssl_keyfile or "").read_text() == pems["tls.key"]
    assert Path(connection.ssl_cafile or "").read_text() == pems["ca.crt"]
    assert connection.client_options()["ssl_context"] is not None  # loads the certificate and key
