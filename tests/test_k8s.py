"""deploy/k8s renders and agrees with the worker, the image and the Prometheus rules.

There is no cluster here: each kustomization is rendered by the real ``kubectl
kustomize`` (offline) and the output is checked — kinds and required fields, selectors,
ports and probes against the worker's web server, the image's entrypoint and user, the
flow ConfigMap's hash and mount, the Secrets' wiring (a pod's environment and mounted
files are rebuilt from the manifests and the example Secrets, then given to the code
that reads them: the flow loader and KafkaConnection.resolve), the PrometheusRule
against deploy/prometheus/rules, and KEDA's trigger against the flow and the worker's
defaults. A missing kubectl fails these tests; it never skips them."""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from agents.app import WorkerOptions, create_app
from agents.cli import main as cli_main
from agents.cli import worker as worker_command
from agents.kafka_connection import ENVIRONMENT, KafkaConfigError, KafkaConnection
from streams.flow import Flow
from streams.loader import load_flow

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
BASE = K8S / "base"
SECRETS = K8S / "secrets.example.yaml"
RULES = DEPLOY / "prometheus" / "rules"
OVERLAYS = ("base", "examples/keda", "examples/no-ca-file", "examples/mtls")
POD_LABELS = {"app.kubernetes.io/name": "leadstreams", "app.kubernetes.io/component": "worker"}

KINDS = {  # the kinds deploy/k8s may render, with their API versions
    "ConfigMap": "v1",
    "Service": "v1",
    "Deployment": "apps/v1",
    "PodDisruptionBudget": "policy/v1",
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
    "ScaledObject": "keda.sh/v1alpha1",
    "TriggerAuthentication": "keda.sh/v1alpha1",
}
REQUIRED = {  # dotted paths every object of the kind must have
    "ConfigMap": ["data"],
    "Service": ["spec.selector", "spec.ports"],
    "Deployment": [
        "spec.selector.matchLabels",
        "spec.template.metadata.labels",
        "spec.template.spec.containers",
    ],
    "PodDisruptionBudget": ["spec.selector.matchLabels"],
    "ServiceMonitor": ["spec.selector.matchLabels", "spec.endpoints"],
    "PrometheusRule": ["spec.groups"],
    "ScaledObject": ["spec.scaleTargetRef.name", "spec.triggers"],
    "TriggerAuthentication": ["spec.secretTargetRef"],
}
# Variables the worker reads besides the Kafka connection's (agents/kafka_connection.py).
WORKER_VARIABLES = set(ENVIRONMENT) | {"LEADSTREAMS_KAFKA_CONFIG", "LEADSTREAMS_INSTANCE_ID"}
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}


# --- rendering ------------------------------------------------------------------------


CACHE = Path(os.environ.get("LEADSTREAMS_CACHE", Path.home() / ".cache" / "leadstreams"))
CACHED_KUSTOMIZE = CACHE / "bin" / "kustomize"  # built by deploy/k8s/ensure-kustomize.sh


def kustomize_command() -> list[str]:
    """``kubectl kustomize``, else ``kustomize build`` (deploy/k8s/ensure-kustomize.sh, run
    by `make tools`, builds one where neither is installed)."""
    if exe := shutil.which("kubectl"):
        return [exe, "kustomize"]
    if exe := shutil.which("kustomize") or (str(CACHED_KUSTOMIZE) if CACHED_KUSTOMIZE.exists() else None):
        return [exe, "build"]
    pytest.fail(
        "neither kubectl nor kustomize is available: these tests render deploy/k8s offline (no cluster "
        "needed). Run deploy/k8s/ensure-kustomize.sh (make tools), or install kubectl >= 1.27"
    )


def run_kustomize(directory: Path) -> list[dict[str, Any]]:
    command = kustomize_command()
    result = subprocess.run([*command, str(directory)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{' '.join(command)} {directory} failed:\n{result.stderr}"
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]
    assert docs, f"kustomize {directory} rendered nothing"
    return docs


@functools.cache
def _rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    return tuple(run_kustomize(K8S / overlay))


def rendered(overlay: str = "base") -> list[dict[str, Any]]:
    return copy.deepcopy(list(_rendered(overlay)))


def objects(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = objects(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def dig(obj: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def worker_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def arg(args: list[str], option: str, default: Any = None) -> Any:
    return args[args.index(option) + 1] if option in args else default


def worker_defaults() -> dict[str, Any]:
    return {param.name: param.default for param in worker_command.params}


def dockerfile(instruction: str) -> list[str]:
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [line.split(None, 1)[1] for line in lines if line.split(None, 1)[0].upper() == instruction]


def example_secrets() -> dict[str, dict[str, str]]:
    docs = [doc for doc in yaml.safe_load_all(SECRETS.read_text()) if doc]
    assert all(doc["kind"] == "Secret" and doc["apiVersion"] == "v1" for doc in docs)
    return {doc["metadata"]["name"]: dict(doc["stringData"]) for doc in docs}


def base_flow(env: dict[str, str]) -> Flow:
    return load_flow(BASE / "flow.yaml", env)


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


# --- every kustomization renders, every object is well formed ------------------------------


def test_kustomize_v5_is_available() -> None:
    command = kustomize_command()
    version = [command[0], "version", "--client"] if command[1] == "kustomize" else [command[0], "version"]
    result = subprocess.run(version, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    if command[1] == "kustomize":  # (a kustomize built by `go install` says "(devel)")
        assert "Kustomize Version: v5" in result.stdout, result.stdout


def test_every_kustomization_under_deploy_k8s_is_tested() -> None:
    found = {str(p.parent.relative_to(K8S)) for p in K8S.rglob("kustomization.yaml")}
    assert found == set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_objects_have_known_kinds_and_required_fields(overlay: str) -> None:
    docs = rendered(overlay)
    seen = set()
    for doc in docs:
        kind = doc["kind"]
        assert kind in KINDS, f"{overlay}: unexpected kind {kind}"
        assert doc["apiVersion"] == KINDS[kind], (
            f"{overlay}: {kind} is {KINDS[kind]}, not {doc['apiVersion']}"
        )
        name = dig(doc, "metadata.name")
        assert name, f"{overlay}: {kind} without a name"
        assert (kind, name) not in seen, f"{overlay}: two {kind} {name}"
        seen.add((kind, name))
        assert "namespace" not in doc["metadata"], f"{overlay}: {kind} {name}: the namespace is the user's"
        assert POD_LABELS.items() <= doc["metadata"]["labels"].items(), f"{overlay}: {kind} {name} labels"
        for path in REQUIRED[kind]:
            assert dig(doc, path), f"{overlay}: {kind} {name} has no {path}"
    kinds = {kind for kind, _ in seen}
    base = {"ConfigMap", "Service", "Deployment", "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule"}
    assert kinds == (base | {"ScaledObject", "TriggerAuthentication"} if overlay == "examples/keda" else base)
    assert "Secret" not in kinds  # never applied over the real credentials


def test_the_base_is_the_same_in_every_overlay_but_for_the_deployment() -> None:
    def without_deployment(overlay: str) -> list[dict[str, Any]]:
        return sorted(
            (doc for doc in rendered(overlay) if doc["kind"] not in ("Deployment", "ScaledObject",
                                                                      "TriggerAuthentication")),
            key=lambda doc: (doc["kind"], doc["metadata"]["name"]),
        )  # fmt: skip

    for overlay in OVERLAYS[1:]:
        assert without_deployment(overlay) == without_deployment("base"), overlay


# --- the Deployment and the image ---------------------------------------------------------


def test_deployment_selector_matches_its_pods_and_the_pdb_service_and_monitor_select_them() -> None:
    docs = rendered()
    deployment = one(docs, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector == POD_LABELS and selector.items() <= pod_labels.items()
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    service = one(docs, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    monitor = one(docs, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


def test_service_and_servicemonitor_reach_the_metrics_on_the_containers_named_port() -> None:
    docs = rendered()
    container = worker_container(docs)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    web_port = int(arg(container["args"], "--web-port", worker_defaults()["web_port"]))
    assert list(ports.values()) == [web_port]
    assert dockerfile("EXPOSE") == [str(web_port)]
    service = one(docs, "Service")
    service_ports = {port["name"]: port for port in service["spec"]["ports"]}
    monitor = one(docs, "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in service_ports, "the ServiceMonitor's port is not a port name of the Service"
    target = service_ports[endpoint["port"]]["targetPort"]
    assert ports.get(target) == web_port if isinstance(target, str) else target == web_port
    assert endpoint.get("path", "/metrics") == "/metrics"
    assert service["spec"].get("publishNotReadyAddresses") is True  # unready workers are scraped too


def test_probes_use_the_workers_health_and_readiness_pages_on_the_named_port(tmp_path: Path) -> None:
    container = worker_container(rendered())
    port_names = {port["name"] for port in container["ports"]}
    probes = {kind: container[f"{kind}Probe"]["httpGet"] for kind in ("startup", "liveness", "readiness")}
    assert {kind: probe["path"] for kind, probe in probes.items()} == {
        "startup": "/healthz",
        "liveness": "/healthz",
        "readiness": "/ready",
    }
    for kind, probe in probes.items():
        assert probe["port"] in port_names, (
            f"{kind} probe: port {probe['port']} is not a named container port"
        )
    # The worker serves those pages (and /metrics) on its web server.
    flow = base_flow(example_secrets()["leadstreams-settings"])
    app = create_app(flow, WorkerOptions(kafka="127.0.0.1:1", data_dir=str(tmp_path)), CollectorRegistry())
    assert {"/healthz", "/ready", "/metrics"} <= set(app.web.views)


def test_container_runs_the_images_entrypoint_with_args_the_worker_accepts() -> None:
    container = worker_container(rendered())
    assert "command" not in container, "a command would replace the image's ENTRYPOINT"
    entrypoint = json.loads(dockerfile("ENTRYPOINT")[-1])
    cmd = json.loads(dockerfile("CMD")[-1])
    assert entrypoint == ["leadstreams"]
    args = container["args"]
    assert args[:2] == cmd[:2] == ["worker", "/flows/flow.yaml"]
    assert arg(args, "--web-host") == arg(cmd, "--web-host") == "0.0.0.0"
    # Every option exists and has a valid value (click parses; nothing runs).
    context = worker_command.make_context("worker", list(args[1:]))
    assert context.params["flow"] == "/flows/flow.yaml"
    assert "--instance-id" not in args


def test_pods_run_as_the_images_user_with_a_read_only_root_and_a_writable_tmp() -> None:
    pod = one(rendered(), "Deployment")["spec"]["template"]["spec"]
    container = worker_container(rendered())
    uid = int(dockerfile("USER")[-1].split(":")[0])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert dockerfile("WORKDIR")[-1] == "/tmp"  # Faust's data dir is under the temp dir
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert "emptyDir" in volumes[tmp["name"]]


def test_image_tag_is_the_projects_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert worker_container(rendered())["image"] == f"leadstreams:{version}"


def test_termination_grace_outlasts_the_workers_shutdown_grace() -> None:
    pod = one(rendered(), "Deployment")["spec"]["template"]["spec"]
    # 30 s for the leads in flight, then commit, leave the group, close the producer.
    assert pod["terminationGracePeriodSeconds"] >= WorkerOptions(kafka="x").shutdown_grace + 10


def test_no_static_membership_in_a_deployment() -> None:
    """A static member never leaves the group: with a Deployment's new pod names each
    rolling update would leave the old pods' partitions idle for the session timeout."""
    docs = rendered()
    container = worker_container(docs)
    assert "LEADSTREAMS_INSTANCE_ID" not in {variable["name"] for variable in container.get("env", [])}
    assert "--instance-id" not in container["args"]
    for secret in example_secrets().values():
        assert "LEADSTREAMS_INSTANCE_ID" not in secret  # envFrom would pass it
    assert worker_defaults()["instance_id"] is None
    assert "Static membership: NOT set here" in (BASE / "deployment.yaml").read_text()  # and why


def test_rollouts_keep_the_group_whole() -> None:
    deployment = one(rendered(), "Deployment")
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert (rolling["maxSurge"], rolling["maxUnavailable"]) == (1, 0)
    # A replica beyond the input's partition count would sit idle.
    assert deployment["spec"]["replicas"] <= worker_defaults()["partitions"]


# --- the flow ConfigMap -----------------------------------------------------------------------


def test_flow_configmap_is_generated_and_mounted_where_the_args_expect_the_flow() -> None:
    docs = rendered()
    container = worker_container(docs)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    configmap = one(docs, "ConfigMap")
    name = configmap["metadata"]["name"]
    assert re.fullmatch(r"leadstreams-flow-[a-z0-9]{10}", name), f"{name}: not a generated (hashed) name"
    flow_path = Path(container["args"][1])
    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == flow_path.parent]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes[mount["name"]]["configMap"]["name"] == name
    assert configmap["data"] == {flow_path.name: (BASE / "flow.yaml").read_text()}


def test_a_changed_flow_changes_the_configmap_name_and_so_the_pod_template(tmp_path: Path) -> None:
    copy_dir = tmp_path / "base"
    shutil.copytree(BASE, copy_dir)
    flow = copy_dir / "flow.yaml"
    assert "timeout: 2s" in flow.read_text()
    flow.write_text(flow.read_text().replace("timeout: 2s", "timeout: 3s"))
    before, after = rendered(), run_kustomize(copy_dir)
    names = [one(docs, "ConfigMap")["metadata"]["name"] for docs in (before, after)]
    assert names[0] != names[1]
    templates = [one(docs, "Deployment")["spec"]["template"] for docs in (before, after)]
    assert templates[0] != templates[1]  # a new ReplicaSet: the pods roll
    volumes = {volume["name"]: volume for volume in templates[1]["spec"]["volumes"]}
    assert volumes["flow"]["configMap"]["name"] == names[1]
    # Everything else is unchanged.
    assert [d for d in before if d["kind"] not in ("ConfigMap", "Deployment")] == [
        d for d in after if d["kind"] not in ("ConfigMap", "Deployment")
    ]


def test_the_flow_is_valid_with_the_variables_the_settings_secret_provides() -> None:
    settings = example_secrets()["leadstreams-settings"]
    text = (BASE / "flow.yaml").read_text()
    without_default = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))
    assert without_default and without_default <= settings.keys()
    flow = base_flow(settings)
    assert flow.name == "lead-validation"
    result = CliRunner().invoke(cli_main, ["check", str(BASE / "flow.yaml")], env=settings)
    assert result.exit_code == 0, result.output
    assert "ok — flow 'lead-validation'" in result.output
    missing = CliRunner().invoke(
        cli_main, ["check", str(BASE / "flow.yaml")], env={"INTERNAL_API_KEY": "k", "PARTNER_URL": None}
    )
    assert missing.exit_code == 2 and "PARTNER_URL" in missing.output


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


# --- PrometheusRule ---------------------------------------------------------------------


def test_prometheusrule_groups_equal_the_rule_files() -> None:
    rule = one(rendered(), "PrometheusRule")
    expected = []
    for name in ("recording.yml", "alerts.yml"):
        expected += yaml.safe_load((RULES / name).read_text())["groups"]
    assert rule["spec"]["groups"] == expected


def test_prometheusrule_file_is_up_to_date_with_its_generator() -> None:
    script = K8S / "prometheusrule.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr


def test_prometheusrule_is_picked_up_like_the_servicemonitor() -> None:
    docs = rendered()
    rule, monitor = one(docs, "PrometheusRule"), one(docs, "ServiceMonitor")
    assert rule["metadata"]["labels"]["release"] == monitor["metadata"]["labels"]["release"]


def test_recording_rules_the_dashboard_reads_are_shipped() -> None:
    rule = one(rendered(), "PrometheusRule")
    shipped = {r["record"] for group in rule["spec"]["groups"] for r in group["rules"] if "record" in r}
    dashboard = (DEPLOY / "grafana" / "dashboards" / "leadstreams.json").read_text()
    used = set(re.findall(r"leadstreams:[A-Za-z0-9_:]+", dashboard))
    assert used and used <= shipped


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
