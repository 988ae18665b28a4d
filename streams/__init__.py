"""leadstreams engine: runs a flow of HTTP integration steps over one lead.

Nothing in this package imports Kafka, Faust or the ``agents`` layer (a test and
an import-linter contract keep it so), so every piece runs and tests offline.
``from streams import load_flow, run_lead`` is its face as a library (``streams.library``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_flow", "run_lead"]


def __getattr__(name: str) -> Any:
    # Loaded on first use, not with every ``streams.*`` module: the loader brings Jinja2 and
    # jsonschema (~0.35 s), which ``leadstreams tail`` or ``publish`` never need.
    if name in __all__:
        from streams import library

        return getattr(library, name)
    raise AttributeError(f"module 'streams' has no attribute {name!r}")
