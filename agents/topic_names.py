"""Kafka's rule for topic names, checked before any request: a broker answers a bad
name with errors a client retries for tens of seconds (publish waited ~40 s, then a
traceback), so the CLI refuses it at once, naming the rule."""

from __future__ import annotations

import re

# kafka.common.internals.Topic: legal characters, at most 249, not "." or "..".
LEGAL = re.compile(r"[a-zA-Z0-9._-]{1,249}")
RULE = "Kafka allows 1 to 249 of letters, digits, '.', '_' and '-' (not '.' or '..')"


def topic_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a Kafka topic, or None when it can."""
    if name in (".", ".."):
        return f"topic name {name!r} is reserved; {RULE}"
    if not LEGAL.fullmatch(name):
        bad = sorted({c for c in name if not re.fullmatch(r"[a-zA-Z0-9._-]", c)})
        why = f"has {len(name)} characters" if not bad else "has " + ", ".join(repr(c) for c in bad)
        return f"topic name {name!r} {why}; {RULE}"
    return None
