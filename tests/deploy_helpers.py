"""Reading deploy/: the Prometheus rules, the dashboard, compose and the
Dockerfile, the metrics the code exports, and the real promtool, for the test_deploy*.py modules."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

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
