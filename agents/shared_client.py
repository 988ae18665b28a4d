"""The worker's HTTP client is shared by every agent that calls partners (the lead agent,
the retry tiers, the notifications agent and its tiers): it is closed once the last of
them has stopped, so no call in flight meets a closed session (a delivery failing for
that reason would be recorded as the partner's failure)."""

from __future__ import annotations

from streams.http_client import HttpClient


class SharedClient:
    def __init__(self, client: HttpClient) -> None:
        self.client = client
        self.users = 0

    def add_user(self) -> None:
        """An agent that calls partners was made (it calls ``release`` when it stops)."""
        self.users += 1

    async def release(self) -> None:
        """One user stopped; the last one closes the client."""
        self.users -= 1
        if self.users == 0:
            await self.client.close()
