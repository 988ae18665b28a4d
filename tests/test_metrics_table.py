"""README's metric table and schemas/metrics.json (what the worker serves) name the same
metrics with the same labels."""

from __future__ import annotations

import re

from helpers import ROOT
from prometheus_client import CollectorRegistry

from streams.metrics import METRICS, Metrics


def readme_rows() -> dict[str, str]:
    """Each metric of README's table → its row's labels column."""
    rows: dict[str, str] = {}
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`leadstreams_"):
            for name in re.findall(r"`(leadstreams_\w+)`", cells[0]):
                rows[name] = cells[2]
    return rows


def test_the_readme_table_lists_every_metric_with_its_labels() -> None:
    rows = readme_rows()
    served = {spec["name"]: spec["labels"] for spec in METRICS["metrics"].values()}
    assert sorted(rows) == sorted(served)
    for name, labels in served.items():
        assert all(re.search(rf"\b{label}\b", rows[name]) for label in labels), (name, labels, rows[name])


def test_every_metric_of_the_table_is_served() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    families = {family.name for family in registry.collect()}
    for spec in METRICS["metrics"].values():
        assert spec["name"].removesuffix("_total") in families
