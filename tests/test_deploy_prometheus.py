"""deploy/prometheus and deploy/grafana agree with the metrics the code exports.

The Prometheus files are checked by the real promtool (`promtool check`/`test rules`); a
missing promtool fails these tests (run deploy/prometheus/ensure-promtool.sh). Rules and
dashboard queries use only exported metrics, their labels and the recording rules."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_helpers import (
    DEPLOY,
    PROMETHEUS,
    RULE_NAME,
    RULES,
    check_expr,
    dashboard,
    exported_series,
    load_yaml,
    panels,
    promtool,
    recorded,
    rules,
)

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
        "LeadstreamsNotificationsGivenUp",
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
