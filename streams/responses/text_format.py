"""Text responses: ``response.text``, ``response.split('|')``, ``response.match(regex)``."""

from __future__ import annotations

import re


class TextResponse(str):
    """The body as a ``str`` with the helpers text templates need."""

    @property
    def text(self) -> str:
        return str(self)

    def match(self, pattern: str) -> list[str] | None:
        """Regex search; ``[0]`` is the whole match, ``[1]`` the first group, …"""
        found = re.search(pattern, self)
        if not found:
            return None
        return [found.group(0), *found.groups()]
