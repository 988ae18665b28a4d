"""The console's token: every ``/console/api/*`` request carries it in a header (not a
cookie: another site's page cannot make the browser send it, so no cross-site requests)."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

TOKEN_ENV = "LEADSTREAMS_CONSOLE_TOKEN"
TOKEN_HEADER = "X-Leadstreams-Token"
MIN_TOKEN = 16  # characters: a token from the environment shorter than this is refused


class WeakToken(ValueError):
    pass


@dataclass(frozen=True)
class ConsoleToken:
    value: str
    from_env: bool  # then it is never printed: whoever set it knows it

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> ConsoleToken:
        given = env.get(TOKEN_ENV, "")
        if not given:
            return cls(secrets.token_urlsafe(24), from_env=False)
        if len(given) < MIN_TOKEN:
            raise WeakToken(f"{TOKEN_ENV} is shorter than {MIN_TOKEN} characters: choose a longer one "
                            f"(or unset it and the worker makes one)")  # fmt: skip
        return cls(given, from_env=True)

    def accepts(self, presented: str | None) -> bool:
        if presented is None:
            return False
        try:
            given = presented.encode()
        except UnicodeError:  # a header that was not UTF-8 (aiohttp keeps its bytes as surrogates)
            return False
        return hmac.compare_digest(given, self.value.encode())

    def page_url(self, host: str, port: int) -> str:
        """The page's address as printed at start: the token in the fragment (never sent to a
        server, so never in an access log); the page keeps it for the tab and drops it."""
        shown = f"(the value of {TOKEN_ENV})" if self.from_env else self.value
        return f"http://{host}:{port}/#token={shown}"
