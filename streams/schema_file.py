"""``python -m streams.schema_file [--check]``: rewrite ``schemas/flow.schema.json`` from the
components' fragments (``streams.flow_schema``), or with ``--check`` only say whether it is
current (exit 1 when not). A module of its own: ``streams`` imports ``flow_schema`` itself, and
``python -m`` of an imported module warns."""

from __future__ import annotations

import json
import sys
from importlib.resources import files
from pathlib import Path

from streams.flow_schema import flow_schema


def schema_text() -> str:
    """The schema as ``schemas/flow.schema.json`` holds it."""
    return json.dumps(flow_schema(), indent=2) + "\n"


def main(argv: list[str]) -> int:
    """``python -m streams.schema_file [--check]``: rewrite schemas/flow.schema.json (or only
    say whether it is current: exit 1 when not)."""
    target = Path(str(files("schemas").joinpath("flow.schema.json")))
    current = target.read_text(encoding="utf-8") if target.exists() else ""
    if current == schema_text():
        return 0
    if "--check" in argv:
        print(f"{target} is out of date: run python -m streams.schema_file", file=sys.stderr)
        return 1
    target.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
