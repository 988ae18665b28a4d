"""Architecture rules: the engine never imports the Kafka layer; `agents` is ours."""

from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path

import pytest

from agents.package_check import AgentsPackageCollision, check_agents_package

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"faust", "aiokafka", "mode", "agents", "kafka", "confluent_kafka"}


def imported_roots(source: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("module", sorted((ROOT / "streams").rglob("*.py")), ids=lambda p: p.name)
def test_engine_module_imports_no_kafka_layer(module: Path) -> None:
    assert imported_roots(module) & FORBIDDEN == set()


def test_agents_package_is_leadstreams() -> None:
    check_agents_package()  # raises if another distribution shadows `agents`


def test_collision_with_another_agents_distribution_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.metadata.packages_distributions()
    monkeypatch.setattr(
        importlib.metadata,
        "packages_distributions",
        lambda: {**real, "agents": ["leadstreams", "openai-agents"]},
    )
    with pytest.raises(AgentsPackageCollision, match="openai-agents"):
        check_agents_package()


FAUST_INTERNALS = ("faust.transport", "faust.types.tuples", "mode.utils.futures")
AGENTS = ROOT / "agents"
FAUST_SEAM = AGENTS / "faust_seam"  # a package: every module in it may reach into Faust


def test_the_faust_seam_is_a_package_of_agents() -> None:
    """The exclusion below names a package that is there (a renamed seam would otherwise
    leave it excluding nothing, or let the seam's modules fail the rule)."""
    assert (FAUST_SEAM / "__init__.py").is_file()
    assert len(list(FAUST_SEAM.glob("*.py"))) > 1


@pytest.mark.parametrize(
    "module",
    sorted(p for p in AGENTS.rglob("*.py") if not p.is_relative_to(FAUST_SEAM)),
    ids=lambda p: p.relative_to(AGENTS).as_posix(),
)
def test_only_the_faust_seam_reaches_into_faust_internals(module: Path) -> None:
    """Faust's private API lives in the package agents/faust_seam/ (version-checked,
    contract-tested): no other module of agents, at any depth, imports Faust's transport
    internals or calls a private method on an object of another module (``x._name(`` where
    x is not ``self``/``cls``)."""
    tree = ast.parse(module.read_text(), str(module))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            assert not node.module.startswith(FAUST_INTERNALS), f"{module.name} imports {node.module}"
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            ours = isinstance(owner, ast.Name) and owner.id in {"self", "cls", "os", "sys"}
            assert ours, f"{module.name}:{node.lineno}: private attribute {node.attr}"
