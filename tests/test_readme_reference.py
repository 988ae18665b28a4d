"""README's reference tables name what the components' fragments hold (#17 item 4): every
auth scheme and its keys, and every default the README states is the code's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from streams.components import AUTH_SCHEMES, BATCH, CACHE
from streams.config import schema_fragment

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
# `key` ... default `value`, with no other backquoted word between them.
_DEFAULT = re.compile(r"`(\w+)`[^|`]*?\bdefault `([^`]+)`")


def table_after(heading: str) -> dict[str, str]:
    """The rows of the first table after ``heading``: first cell (backquotes dropped) -> the rest."""
    lines = README[README.index(heading) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows: dict[str, str] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        first, rest = line[1:].split("|", 1)
        rows[first.strip().strip("`")] = rest
    return rows


def stated_defaults(text: str) -> dict[str, str]:
    return {key: value.strip('"').replace("\\n", "\n") for key, value in _DEFAULT.findall(text)}


def properties(component: Any) -> dict[str, Any]:
    return dict(schema_fragment(component)["properties"])


def test_the_auth_table_names_every_scheme_and_key_with_its_default() -> None:
    rows = table_after("### Auth (`integrations.*.auth`)")
    assert set(rows) == set(AUTH_SCHEMES)
    for name, scheme in AUTH_SCHEMES.items():
        keys = {key: prop for key, prop in properties(scheme).items() if key != "type"}
        missing = [key for key in keys if not re.search(rf"`{key}\b", rows[name])]
        assert not missing, f"README auth row {name!r} does not name {missing}"
        for key, value in stated_defaults(rows[name]).items():
            assert key in keys, f"README auth row {name!r}: {key!r} is no key of the scheme"
            assert str(keys[key].get("default")) == value, f"README auth row {name!r}: default of {key!r}"


def test_the_reference_table_states_the_batch_and_cache_defaults() -> None:
    rows = table_after("### Reference")
    [written] = re.findall(r"`\{([^}]*)\}`", rows["steps[].batch"])
    batch = properties(BATCH)
    entries = dict([*part.split(":"), ""][:2] for part in (p.strip() for p in written.split(",")))
    assert set(entries) == set(batch)
    for key, value in entries.items():
        assert not value.strip() or batch[key]["default"] == value.strip(), key
    [cache] = re.findall(r"`cache: \{max_entries\}` \(default ([\d,]+)", rows["integrations.NAME"])
    assert int(cache.replace(",", "")) == properties(CACHE)["max_entries"]["default"]
