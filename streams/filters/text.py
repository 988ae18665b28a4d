"""Text filters: digits and regular expressions."""

from __future__ import annotations

import re
from typing import Any

from streams.filters._base import as_text, is_blank


def digits(value: Any) -> str:
    """Keep only the ASCII digits 0-9: ``(555) 123-4567`` -> ``5551234567``. None or missing gives "".

    ASCII only, because partner APIs expect phone numbers they can parse as 0-9."""
    return re.sub(r"[^0-9]", "", as_text(value))


def regex_replace(value: Any, pattern: str, replacement: str = "") -> str:
    """Replace every match of the regular expression ``pattern`` with ``replacement``
    (``\\1`` refers to a group); without a replacement, matches are removed.
    None or missing gives ""."""
    return re.sub(pattern, replacement, as_text(value))


def regex_search(value: Any, pattern: str, group: int | str = 0) -> str | None:
    """The first match of the regular expression ``pattern``, or of one of its groups
    (by number or name); None when nothing matches, the group did not take part,
    or the value is None/missing. ``'ID-(\\d+)' , 1`` on ``ref ID-42`` gives ``42``."""
    if is_blank(value):
        return None
    match = re.search(pattern, str(value))
    return None if match is None else match.group(group)
