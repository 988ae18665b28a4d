"""Refuse to run when the top-level ``agents`` name is not ours.

``agents`` is a common name (openai-agents ships one); if another distribution
provides it, imports may silently pick the wrong package depending on sys.path.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import agents
import streams


class AgentsPackageCollision(RuntimeError):
    pass


def check_agents_package() -> None:
    owners = set(importlib.metadata.packages_distributions().get("agents", []))
    others = owners - {"leadstreams"}
    if others:
        raise AgentsPackageCollision(
            f"the top-level 'agents' package is also installed by {', '.join(sorted(others))}; "
            "uninstall it or use a separate virtualenv for leadstreams"
        )
    ours = getattr(agents, "LEADSTREAMS_PACKAGE", None) == "leadstreams"
    beside_engine = (
        Path(agents.__file__).resolve().parent.parent == Path(streams.__file__).resolve().parent.parent
    )
    if not (ours and beside_engine):
        raise AgentsPackageCollision(
            f"'agents' resolves to {agents.__file__}, which is not leadstreams' Faust layer"
        )
