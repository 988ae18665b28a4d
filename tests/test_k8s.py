"""deploy/k8s renders and agrees with the worker and the image.

There is no cluster here: each kustomization is rendered by the real ``kubectl
kustomize`` (offline) and the output is checked — kinds and required fields, selectors,
ports and probes against the worker's web server, the image's entrypoint and user, the
flow ConfigMap's hash and mount. The Secrets' wiring is checked in test_k8s_secrets.py, the
PrometheusRule in test_k8s_prometheusrule.py, KEDA in test_k8s_keda.py. A missing kubectl
fails these tests; it never skips them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from k8s_helpers import (
    BASE,
    K8S,
    KINDS,
    MANY_FLOWS,
    OVERLAYS,
    POD_LABELS,
    REQUIRED,
    ROOT,
    ConfigMapVolume,
    arg,
    base_flow,
    dig,
    dockerfile,
    example_secrets,
    kustomize_command,
    one,
    rendered,
    run_kustomize,
    worker_container,
    worker_defaults,
)
from prometheus_client import CollectorRegistry

from agents.app import WorkerOptions, create_app
from agents.cli import main as cli_main
from agents.cli import worker as worker_command
from streams.flow_files import flow_paths, load_flow_files

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
    def without(overlay: str, own: tuple[str, ...]) -> list[dict[str, Any]]:
        return sorted(
            (doc for doc in rendered(overlay) if doc["kind"] not in own),
            key=lambda doc: (doc["kind"], doc["metadata"]["name"]),
        )

    for overlay in OVERLAYS[1:]:
        own = ("Deployment", "ScaledObject", "TriggerAuthentication")
        # examples/many-flows replaces the base's flow ConfigMap (one flow, a hashed name: a
        # change rolls the pods) by its own (a directory of flows, a stable name: the running
        # pods reload a change), so the ConfigMap is that overlay's own too.
        own += ("ConfigMap",) if overlay == "examples/many-flows" else ()
        assert without(overlay, own) == without("base", own), overlay


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
    assert context.params["paths"] == ("/flows/flow.yaml",)
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


# --- examples/many-flows: a directory of flows, reloaded in place ------------------------------


def many_flows_configmap(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "ConfigMap")


def test_many_flows_configmap_has_a_stable_name_and_a_key_per_flow_file() -> None:
    configmap = many_flows_configmap(rendered("examples/many-flows"))
    # No hash suffix: the kubelet updates a mounted ConfigMap in place only while the pod
    # still refers to the same ConfigMap (a new name would be a new pod template, a rollout).
    assert configmap["metadata"]["name"] == "leadstreams-flows"
    files = sorted((MANY_FLOWS / "flows").glob("*.yaml"))
    assert len(files) >= 2
    assert configmap["data"] == {path.name: path.read_text() for path in files}


def test_many_flows_a_changed_flow_keeps_the_configmap_name_and_the_pod_template(tmp_path: Path) -> None:
    copy_k8s = tmp_path / "k8s"
    shutil.copytree(K8S, copy_k8s)  # the overlay with the base it refers to (../../base)
    overlay = copy_k8s / "examples" / "many-flows"
    flow = overlay / "flows" / "web-leads.yaml"
    assert "timeout: 2s" in flow.read_text()
    flow.write_text(flow.read_text().replace("timeout: 2s", "timeout: 3s"))
    before, after = rendered("examples/many-flows"), run_kustomize(overlay)
    configmaps = [many_flows_configmap(docs) for docs in (before, after)]
    assert configmaps[0]["metadata"]["name"] == configmaps[1]["metadata"]["name"] == "leadstreams-flows"
    assert configmaps[0]["data"] != configmaps[1]["data"]
    templates = [one(docs, "Deployment")["spec"]["template"] for docs in (before, after)]
    assert templates[0] == templates[1]  # no new ReplicaSet: the running pods reload the files


def test_many_flows_every_flow_is_valid_and_they_run_together(tmp_path: Path) -> None:
    settings = example_secrets()["leadstreams-settings"]
    configmap = many_flows_configmap(rendered("examples/many-flows"))
    # Mounted as the kubelet mounts it: key symlinks into ..data, which the worker's scan
    # must take for the flow files (and not the hidden ..data entries).
    volume = ConfigMapVolume(tmp_path / "flows")
    volume.write(configmap["data"])
    paths, missing = flow_paths([str(volume.target)])
    assert not missing and sorted(Path(p).name for p in paths) == sorted(configmap["data"])
    result = CliRunner().invoke(cli_main, ["check", *paths], env=settings)
    assert result.exit_code == 0, result.output
    for path in paths:
        assert f"{path}: ok — flow" in result.output
    # Together, as the worker loads them: distinct names and input topics.
    scan = load_flow_files([str(volume.target)], settings)
    assert not scan.problems, scan.problems
    flows = list(scan.flows.values())
    assert len({f.name for f in flows}) == len({f.topics.input for f in flows}) == len(configmap["data"])


def test_many_flows_mounts_the_whole_configmap_where_the_args_name_the_directory() -> None:
    docs = rendered("examples/many-flows")
    container = worker_container(docs)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    directory = container["args"][1]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
    assert "subPath" not in mount and "subPathExpr" not in mount, "a subPath mount is never updated"
    assert mount.get("readOnly") is True
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    source = volumes[mount["name"]]["configMap"]
    assert source["name"] == many_flows_configmap(docs)["metadata"]["name"]
    assert "items" not in source  # every key is a file: a flow added to the ConfigMap appears
    # Nothing else is mounted over or under the flows directory.
    others = [m["mountPath"] for m in container["volumeMounts"] if m is not mount]
    assert not [p for p in others if Path(p).is_relative_to(directory) or Path(directory).is_relative_to(p)]


def test_many_flows_args_are_the_bases_with_the_directory_and_a_group_the_worker_accepts() -> None:
    base_args = worker_container(rendered())["args"]
    args = worker_container(rendered("examples/many-flows"))["args"]
    assert args == [base_args[0], "/flows", *base_args[2:], "--group-id", "leadstreams-flows"]
    context = worker_command.make_context("worker", list(args[1:]))
    assert context.params["paths"] == ("/flows",)
    assert context.params["group_id"] == "leadstreams-flows"
    assert context.params["watch"] is True  # the reload on a changed ConfigMap
