"""The observability and deployment files of deploy/ agree with the code and with each other.

Docker is not needed: compose files are parsed and cross-checked (the Kubernetes
manifests are rendered and checked by tests/test_k8s.py). The Prometheus files are
checked by the real promtool (`promtool check`/`test rules`); a missing promtool fails
these tests (run deploy/prometheus/ensure-promtool.sh)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from agents.app import WorkerOptions, create_app
from agents.cli import worker as worker_command
from streams.loader import load_flow
from streams.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
RULES = {"recording": PROMETHEUS / "rules" / "recording.yml", "alerts": PROMETHEUS / "rules" / "alerts.yml"}
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "leadstreams.json"
WEB_PORT = 6066
ENSURE = "deploy/prometheus/ensure-promtool.sh"

YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml") and ".git" not in p.parts)
RAW_NAME = re.compile(r"\bleadstreams_[A-Za-z0-9_]+")
RULE_NAME = re.compile(r"\bleadstreams:[A-Za-z0-9_:]+")
BY_CLAUSE = re.compile(r"\bby\s*\(([^)]*)\)")
SELECTOR = re.compile(r"(leadstreams[:_][A-Za-z0-9_:]+)\{([^}]*)\}")
SCRAPE_LABELS = {"instance", "job"}  # added by Prometheus to every scraped series


# --- helpers -------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail(f"promtool is not on PATH: run {ENSURE} (installs Debian's prometheus package)")
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def exported_series() -> dict[str, set[str]]:
    """Every series name the worker can expose, with its labels (``le`` on buckets)."""
    metrics = Metrics(CollectorRegistry())
    series: dict[str, set[str]] = {}
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        # prometheus_client keeps the declared name and labels in these attributes;
        # counters are declared without _total and exposed with it.
        name, labels, kind = metric._name, set(metric._labelnames), metric._type
        if kind == "counter":
            series[f"{name}_total"] = labels
            series[f"{name}_created"] = labels
        elif kind == "histogram":
            series[f"{name}_bucket"] = labels | {"le"}
            for suffix in ("_sum", "_count", "_created"):
                series[f"{name}{suffix}"] = labels
        else:
            series[name] = labels
    return series


def rules(kind: str) -> Iterator[dict[str, Any]]:
    for group in load_yaml(RULES[kind])["groups"]:
        yield from group["rules"]


def recorded() -> dict[str, set[str]]:
    """Recording rule name -> the labels of its series (its aggregation, minus ``le``)."""
    result = {}
    for rule in rules("recording"):
        by = BY_CLAUSE.search(rule["expr"])
        assert by, f"{rule['record']}: aggregate with an explicit `by (...)`"
        result[rule["record"]] = split_labels(by.group(1)) - {"le"}
    return result


def split_labels(text: str) -> set[str]:
    return {label.strip() for label in text.split(",") if label.strip()}


def known_series() -> dict[str, set[str]]:
    raw = {name: labels | SCRAPE_LABELS for name, labels in exported_series().items()}
    return {**raw, **recorded()}


def names_in(expr: str) -> set[str]:
    return set(RAW_NAME.findall(expr)) | set(RULE_NAME.findall(expr))


def check_expr(expr: str, where: str) -> set[str]:
    """Fail on unknown series, on label matchers and `by` labels the series do not have;
    return the labels of the expression's result."""
    series = known_series()
    names = names_in(expr)
    assert names, f"{where}: no leadstreams series in {expr!r}"
    unknown = names - series.keys()
    assert not unknown, f"{where}: {sorted(unknown)} is neither an exported metric nor a recording rule"
    available = set().union(*(series[name] for name in names))
    for name, matchers in SELECTOR.findall(expr):
        keys = {m.split("=")[0].strip(" !~") for m in matchers.split(",") if m.strip()}
        assert keys <= series[name], f"{where}: {name} has no label(s) {sorted(keys - series[name])}"
    by_clauses = [split_labels(group) for group in BY_CLAUSE.findall(expr)]
    for labels in by_clauses:
        assert labels <= available | {"le"}, f"{where}: by {sorted(labels - available)} not on {names}"
    if by_clauses:
        return by_clauses[0] - {"le"}
    return available


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def compose() -> dict[str, Any]:
    return load_yaml(DEPLOY / "compose.yaml")


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with nothing set in the environment."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}", r"\1", value)


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def dockerfile(instruction: str) -> list[str]:
    return [arg for name, arg in dockerfile_instructions() if name == instruction]


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


# --- promtool ---------------------------------------------------------------------------


def test_promtool_check_config() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    # check config also checks the rule files it lists: both must be listed.
    assert "2 rule files found" in result.stdout, result.stdout


@pytest.mark.parametrize("kind", sorted(RULES))
def test_promtool_check_rules(kind: str) -> None:
    result = promtool("check", "rules", str(RULES[kind]))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    tests = sorted(str(p.relative_to(PROMETHEUS)) for p in (PROMETHEUS / "tests").glob("*.yml"))
    result = promtool("test", "rules", *tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(tests), result.stdout


def test_rule_unit_tests_cover_every_alert_firing_and_not_firing() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in (PROMETHEUS / "tests").glob("*.yml"):
        for case in load_yaml(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = {rule["alert"] for rule in rules("alerts")}
    assert alerts == {
        "LeadstreamsSlowPartner",
        "LeadstreamsHighErrorRate",
        "LeadstreamsAuthFailures",
        "LeadstreamsConsumerLag",
        "LeadstreamsCircuitOpen",
    }
    assert alerts - firing == set(), "alerts never tested firing"
    assert alerts - silent == set(), "alerts never tested not firing"


def test_a_wrong_expectation_fails_the_rule_unit_tests(tmp_path: Path) -> None:
    # The promtool test above can only fail if promtool really compares the values.
    shutil.copytree(PROMETHEUS, tmp_path / "prometheus")
    test_file = tmp_path / "prometheus" / "tests" / "recording.test.yml"
    text = test_file.read_text()
    assert "value: 1.75" in text  # the p99 of the synthetic histogram
    test_file.write_text(text.replace("value: 1.75", "value: 1.5"))
    result = promtool("test", "rules", "tests/recording.test.yml", cwd=tmp_path / "prometheus")
    assert result.returncode != 0
    assert "1.75E+00" in result.stdout + result.stderr


# --- names: rules and dashboard vs. the metrics the code exports --------------------------


def test_exported_metrics_include_the_ones_the_rules_are_built_on() -> None:
    series = exported_series()
    for name in (
        "leadstreams_request_duration_seconds_bucket",
        "leadstreams_end_to_end_seconds_bucket",
        "leadstreams_consumer_lag",
        "leadstreams_auth_failures_total",
        "leadstreams_circuit_state",
    ):
        assert name in series, f"{name} is not exported by streams/metrics.py"


@pytest.mark.parametrize("kind", sorted(RULES))
def test_rules_use_only_exported_metrics_and_their_labels(kind: str) -> None:
    for rule in rules(kind):
        check_expr(rule["expr"], rule.get("record") or rule["alert"])


def test_recording_rules_are_in_the_leadstreams_namespace() -> None:
    names = list(recorded())
    assert all(name.startswith("leadstreams:") for name in names)
    for quantile in ("p50", "p95", "p99"):
        assert f"leadstreams:request_duration_seconds:{quantile}" in names
        assert f"leadstreams:end_to_end_seconds:{quantile}" in names
    assert recorded()["leadstreams:request_duration_seconds:p99"] == {"flow", "integration"}
    assert recorded()["leadstreams:end_to_end_seconds:p99"] == {"flow"}


def test_alerts_have_severity_summary_and_description_with_existing_labels() -> None:
    for rule in rules("alerts"):
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert {"summary", "description"} <= rule["annotations"].keys(), name
        labels = check_expr(rule["expr"], name)
        for text in rule["annotations"].values():
            used = set(re.findall(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)", text))
            assert used <= labels, f"{name}: annotation uses {sorted(used - labels)}, not in {labels}"


def dashboard_queries() -> Iterator[tuple[str, str, str]]:
    """(where, expr, legendFormat) of every panel target and template-variable query."""
    board = dashboard()
    for panel in panels(board):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r}", target["expr"], target.get("legendFormat", "")
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            yield f"variable {var['name']}", query, ""


def test_dashboard_queries_use_recording_rules_or_exported_metrics() -> None:
    queries = list(dashboard_queries())
    assert len(queries) >= 10
    for where, expr, legend in queries:
        labels = check_expr(expr, where)
        used = set(re.findall(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", legend))
        assert used <= labels, f"{where}: legend uses {sorted(used - labels)}, not in {labels}"


def test_dashboard_is_built_on_the_recording_rules() -> None:
    exprs = " ".join(expr for _, expr, _ in dashboard_queries())
    used = set(RULE_NAME.findall(exprs))
    alert_exprs = " ".join(rule["expr"] for rule in rules("alerts"))
    unused = recorded().keys() - used - set(RULE_NAME.findall(alert_exprs))
    assert not unused, f"recording rules neither on the dashboard nor in an alert: {sorted(unused)}"
    for required in (
        "leadstreams:leads_written:rate5m",
        "leadstreams:request_duration_seconds:p99",
        "leadstreams:end_to_end_seconds:p99",
        "leadstreams:request_error_ratio:rate5m",
        "leadstreams:step_outcomes:rate5m",
        "leadstreams:rate_limit_wait_seconds:p95",
        "leadstreams:consumer_lag:sum",
    ):
        assert required in used, required
    assert "leadstreams_circuit_state" in exprs


def test_dashboard_has_flow_and_integration_variables_and_a_datasource_variable() -> None:
    board = dashboard()
    variables = {var["name"]: var for var in board["templating"]["list"]}
    assert {"flow", "integration", "DS_PROMETHEUS"} <= variables.keys()
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    provisioned = load_yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")["datasources"]
    assert variables["DS_PROMETHEUS"]["current"]["value"] in {ds["uid"] for ds in provisioned}
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        for target in panel["targets"]:
            assert "$flow" in target["expr"], f"{panel['title']}: not filtered by $flow"


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
