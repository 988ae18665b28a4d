"""The deployment files of deploy/ agree with the code and with each other.

Docker is not needed: compose files are parsed and cross-checked (the Kubernetes
manifests are rendered and checked by tests/test_k8s*.py, the Prometheus rules and the
dashboard by tests/test_deploy_prometheus.py). Every file parses; ports, paths and
commands agree between the worker, the Dockerfile, compose and Prometheus."""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import (
    DASHBOARD,
    DEPLOY,
    ENSURE,
    PROMETHEUS,
    ROOT,
    WEB_PORT,
    YAML_FILES,
    compose,
    dashboard,
    dockerfile,
    interpolate,
    load_docs,
    load_yaml,
    panels,
)
from prometheus_client import CollectorRegistry

from agents.app import WorkerOptions, create_app
from agents.cli import worker as worker_command
from streams.loader import load_flow

# --- every file parses ------------------------------------------------------------------


def test_the_deploy_directory_has_the_expected_files() -> None:
    # A guard for the parametrised tests below: they would pass vacuously on no files.
    names = {str(p.relative_to(DEPLOY)) for p in YAML_FILES}
    assert {
        "compose.yaml",
        "compose/flow.yaml",
        "prometheus/prometheus.yml",
        "prometheus/rules/recording.yml",
        "prometheus/rules/alerts.yml",
        "grafana/provisioning/datasources/prometheus.yml",
        "grafana/provisioning/dashboards/leadstreams.yml",
        "k8s/base/kustomization.yaml",
        "k8s/base/deployment.yaml",
        "k8s/base/service.yaml",
        "k8s/base/pdb.yaml",
        "k8s/base/servicemonitor.yaml",
        "k8s/base/prometheusrule.yaml",
        "k8s/base/flow.yaml",
        "k8s/secrets.example.yaml",
        "k8s/examples/keda/scaledobject.yaml",
    } <= names
    assert list((PROMETHEUS / "tests").glob("*.yml"))


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    docs = load_docs(path)
    assert docs, f"{path} is empty"
    assert all(isinstance(doc, dict) for doc in docs), f"{path}: every document must be a mapping"


def test_dashboard_is_valid_json_with_unique_panel_ids() -> None:
    board = dashboard()
    assert board["uid"] == "leadstreams"
    assert 36 <= board["schemaVersion"] <= 41
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids))


# --- ports, paths and commands -------------------------------------------------------------


def test_the_worker_defaults_to_port_6066_and_serves_metrics_and_healthz(tmp_path: Path) -> None:
    defaults = {param.name: param.default for param in worker_command.params}
    assert defaults["web_port"] == WEB_PORT
    assert WorkerOptions(kafka="x").web_port == WEB_PORT
    flow = load_flow(DEPLOY / "compose" / "flow.yaml", {"INTERNAL_API_KEY": "k"})
    app = create_app(
        flow, WorkerOptions(kafka="127.0.0.1:1", data_dir=str(tmp_path)), CollectorRegistry()
    )
    assert {"/metrics", "/healthz"} <= set(app.web.views)


def test_instance_id_and_session_timeout_reach_the_consumer(tmp_path: Path) -> None:
    flow = load_flow(DEPLOY / "compose" / "flow.yaml", {"INTERNAL_API_KEY": "k"})
    options = WorkerOptions(
        kafka="127.0.0.1:1", data_dir=str(tmp_path), instance_id="w-1", session_timeout=20
    )
    app = create_app(flow, options, CollectorRegistry())
    assert app.conf.consumer_group_instance_id == "w-1"
    assert app.conf.broker_session_timeout == 20
    defaults = {param.name: param.default for param in worker_command.params}
    assert defaults["instance_id"] is None and defaults["session_timeout"] == 45.0


def test_dockerfile_runs_the_worker_on_6066_as_non_root() -> None:
    assert dockerfile("FROM")[-1].startswith("python:3.11-slim")
    assert dockerfile("EXPOSE") == [str(WEB_PORT)]
    assert json.loads(dockerfile("ENTRYPOINT")[-1]) == ["leadstreams"]
    cmd = json.loads(dockerfile("CMD")[-1])
    assert cmd[:2] == ["worker", "/flows/flow.yaml"]
    assert cmd[cmd.index("--web-host") + 1] == "0.0.0.0"
    user = dockerfile("USER")[-1].split(":")[0]
    assert user not in ("root", "0")


def test_dockerfile_copies_every_package_of_the_project() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = project["tool"]["setuptools"]["packages"]["find"]["include"]
    top_level = {pattern.split(".")[0] for pattern in found}
    needed = top_level | {"pyproject.toml", project["project"]["readme"]}
    copied = set()
    for arg in dockerfile("COPY"):
        if arg.startswith("--from"):
            continue
        *sources, _ = arg.split()
        copied |= set(sources)
    assert needed <= copied, f"not copied into the build stage: {sorted(needed - copied)}"
    assert all((ROOT / source).exists() for source in copied)


def test_prometheus_scrapes_the_workers_metrics_on_6066() -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "leadstreams"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    ports = [sd["port"] for sd in job.get("dns_sd_configs", [])]
    ports += [int(t.rsplit(":", 1)[1]) for sc in job.get("static_configs", []) for t in sc["targets"]]
    assert ports and set(ports) == {WEB_PORT}
    assert sorted(config["rule_files"]) == ["rules/alerts.yml", "rules/recording.yml"]


def test_compose_worker_exposes_6066_and_checks_healthz() -> None:
    worker = compose()["services"]["worker"]
    assert any(port.split(":")[-1] == str(WEB_PORT) for port in worker["ports"])
    health = " ".join(worker["healthcheck"]["test"])
    assert f":{WEB_PORT}/healthz" in health
    assert worker["environment"]["LEADSTREAMS_BOOTSTRAP"] == "kafka:9092"


def container_to_host(service: dict[str, Any], container_path: str) -> Path | None:
    """The repository file a container path of a compose service is mounted from."""
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return (DEPLOY / source / container_path[len(target) :].lstrip("/")).resolve()
    return None


def test_compose_services_reference_files_that_exist() -> None:
    services = compose()["services"]
    assert {"kafka", "partner", "worker", "prometheus", "grafana"} <= services.keys()
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):  # a bind mount, not a named volume
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
        if "build" in service:
            context = DEPLOY / service["build"]["context"]
            assert (context / service["build"]["dockerfile"]).is_file(), name
    # The files the containers are started with resolve to repository files.
    worker_flow = json.loads(dockerfile("CMD")[-1])[1]
    started = {
        "worker": worker_flow,
        "partner": services["partner"]["entrypoint"][-1],
        "prometheus": next(
            arg.split("=", 1)[1]
            for arg in services["prometheus"]["command"]
            if arg.startswith("--config.file=")
        ),
    }
    expected = {
        "worker": DEPLOY / "compose" / "flow.yaml",
        "partner": ROOT / "examples" / "demo" / "partner_api.py",
        "prometheus": PROMETHEUS / "prometheus.yml",
    }
    for name, path in started.items():
        assert container_to_host(services[name], path) == expected[name].resolve(), name
    grafana = services["grafana"]
    provider = load_yaml(DEPLOY / "grafana/provisioning/dashboards/leadstreams.yml")["providers"][0]
    assert container_to_host(grafana, provider["options"]["path"]) == DASHBOARD.parent.resolve()
    assert container_to_host(grafana, "/etc/grafana/provisioning/datasources/prometheus.yml") is not None


def test_compose_flow_reaches_the_partner_container() -> None:
    services = compose()["services"]
    worker = services["worker"]
    env = {key: interpolate(str(value)) for key, value in worker["environment"].items()}
    flow = load_flow(DEPLOY / "compose" / "flow.yaml", env)
    (integration,) = flow.integrations.values()
    # The partner is another container at a private address: private networks must be
    # allowed, loopback need not be.
    assert integration.allow_private_networks is True
    assert integration.allow_loopback is False
    assert env["PARTNER_URL"] == "http://partner:8080"
    partner_cmd = [interpolate(str(arg)) for arg in services["partner"]["command"]]
    assert partner_cmd[partner_cmd.index("--port") + 1] == "8080"
    assert partner_cmd[partner_cmd.index("--api-key") + 1] == env["INTERNAL_API_KEY"]
    datasource = load_yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"


def test_ensure_promtool_script_is_executable_and_exits_0_when_present() -> None:
    script = ROOT / ENSURE
    assert script.stat().st_mode & 0o111, f"{ENSURE} is not executable"
    if shutil.which("promtool") is None or shutil.which("prometheus") is None:
        pytest.fail(f"promtool/prometheus not on PATH: run {ENSURE}")
    result = subprocess.run([str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "installing" not in result.stderr  # present tools: nothing to install


def test_a_static_member_keeps_its_identity_whatever_its_web_port(tmp_path: Path) -> None:
    """Faust's assignor asserts the assignment names the worker's URL; a static member
    rejoining with another --web-port gets its old assignment, so the URL is the id."""
    flow = load_flow(DEPLOY / "compose" / "flow.yaml", {"INTERNAL_API_KEY": "k"})
    urls = {
        str(create_app(flow, WorkerOptions(kafka="127.0.0.1:1", data_dir=str(tmp_path), web_port=port,
                                           instance_id="w-1"), CollectorRegistry()).conf.canonical_url)
        for port in (7001, 7002)
    }  # fmt: skip
    assert len(urls) == 1
