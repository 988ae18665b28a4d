"""An OAuth2 client-credentials auth on a fake clock, for the test_oauth2*.py modules."""

from __future__ import annotations

from typing import Any

from streams.auth.oauth2 import OAuth2ClientCredentials

TOKEN_URL = "https://auth.example/oauth/token"
SECRET = "s3cr3t/+&value"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def oauth(
    clock: FakeClock | None = None, token_url: str = TOKEN_URL, **options: Any
) -> OAuth2ClientCredentials:
    return OAuth2ClientCredentials(
        token_url=token_url, client_id="client-1", client_secret=SECRET, clock=clock or FakeClock(), **options
    )
