"""Rendering deploy/k8s offline and reading what it must agree with (the Dockerfile, the
example Secrets, the worker's options), for the test_k8s*.py modules. A missing kubectl (or
kustomize) fails these tests; it never skips them."""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.cli import worker as worker_command
from agents.kafka_connection import ENVIRONMENT
from streams.flow import Flow
from streams.loader import load_flow

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
BASE = K8S / "base"
SECRETS = K8S / "secrets.example.yaml"
RULES = DEPLOY / "prometheus" / "rules"
OVERLAYS = ("base", "examples/keda", "examples/no-ca-file", "examples/mtls", "examples/many-flows")
MANY_FLOWS = K8S / "examples" / "many-flows"
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


# --- a ConfigMap volume, as the kubelet writes it ------------------------------------------


class ConfigMapVolume:
    """A directory laid out and updated as the kubelet's AtomicWriter does for a ConfigMap
    volume (kubernetes pkg/volume/util/atomic_writer.go, Write steps 5-11): the files are in
    a timestamped directory ``..2026_12_01_10_00_00.<random>``, ``..data`` is a symlink to
    it and each key is a symlink ``KEY -> ..data/KEY``. An update writes a new timestamped
    directory, adds the new keys' symlinks (dangling until the swap), points ``..data_tmp``
    at the new directory and renames it over ``..data`` (the one atomic step), then removes
    the dropped keys' symlinks and the old directory. Written here: no library reproduces
    the kubelet's layout, and this is what the worker's directory watch must follow."""

    def __init__(self, target: Path) -> None:
        self.target = target
        target.mkdir(parents=True, exist_ok=True)

    @property
    def keys(self) -> set[str]:
        current = self._current()
        return set(os.listdir(self.target / current)) if current else set()

    def _current(self) -> str | None:
        data = self.target / "..data"
        return os.readlink(data) if data.is_symlink() else None

    def write(self, payload: dict[str, str]) -> None:
        old = self._current()
        removed = self.keys - payload.keys()
        # (5, 6) the payload in a new timestamped directory (mode 0755, as the kubelet sets)
        stamp = datetime.now(UTC).strftime("..%Y_%m_%d_%H_%M_%S.")
        fresh = Path(tempfile.mkdtemp(prefix=stamp, dir=self.target))
        fresh.chmod(0o755)
        for key, text in payload.items():
            (fresh / key).write_text(text)
        # (7) a symlink for each new key (it dangles until ..data points at the new directory)
        for key in payload:
            if not (self.target / key).is_symlink():
                os.symlink(os.path.join("..data", key), self.target / key)
        # (8, 9) ..data_tmp -> the new directory, renamed over ..data
        os.symlink(fresh.name, self.target / "..data_tmp")
        os.rename(self.target / "..data_tmp", self.target / "..data")
        # (10, 11) the dropped keys' symlinks, then the old directory
        for key in removed:
            os.remove(self.target / key)
        if old:
            shutil.rmtree(self.target / old)
