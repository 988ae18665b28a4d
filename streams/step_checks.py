"""Checks of one step's mapping that the flow schema cannot express: each names the path
of what is wrong and why, for the loader to report as ``FILE:LINE: path: message``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from streams.yaml_source import Path

_ABSOLUTE = re.compile(r"\s*(https?://|\{)", re.IGNORECASE)

# What a notify step cannot have: its answer arrives after the lead's event was written.
NOTIFY_CONFLICTS = {
    "map": "cannot map fields onto the lead",
    "store": "cannot store variables for later steps",
    "price": "cannot price the lead",
    "reference": "cannot set the lead's reference",
    "fallback": "has no fallback chain (use `notify: {important: true}` to retry it later)",
    "batch": "cannot be a batch step",
    "continue_on": "never stops the flow, so `continue_on` means nothing",
}


def relative_urls(raw: dict[str, Any], path: Path, integration: str | None) -> Iterator[tuple[Path, str]]:
    """Without a base_url, a relative URL can only fail at run time, for every lead: say so now."""
    urls = [((*path, "request", "url"), raw["request"].get("url"))]
    routes = enumerate(raw.get("routes") or [])
    urls += [((*path, "routes", i, "url"), route.get("url")) for i, route in routes]
    for where, url in urls:
        # A URL that starts with a template may render absolute (`{{ settings.partner_url }}/x`).
        if isinstance(url, str) and not _ABSOLUTE.match(url):
            needs = (
                "an `integration:` with a base_url"
                if integration is None
                else f"a base_url on integration {integration!r}"
            )
            yield where, f"relative url {url!r} needs {needs} (or write the whole https://… URL)"


def notify_conflicts(raw: dict[str, Any], path: Path) -> Iterator[tuple[Path, str]]:
    """Keys a ``notify:`` step cannot have, each with why."""
    if raw.get("notify") in (None, False):  # (`notify: {}` is a notify step too)
        return
    for key, why in NOTIFY_CONFLICTS.items():
        if key in raw:
            yield (*path, key), f"a notify step's answer comes after the lead's event is written: it {why}"
