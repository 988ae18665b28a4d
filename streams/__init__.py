"""leadstreams engine: runs a flow of HTTP integration steps over one lead.

Nothing in this package imports Kafka, Faust or the ``agents`` layer (a test and
an import-linter contract keep it so), so every piece runs and tests offline.
``from streams import load_flow, run_lead`` is its face as a library (``streams.library``).
"""

from streams.library import load_flow, run_lead

__all__ = ["load_flow", "run_lead"]
