"""The worker's HTTP client is shared by the lead agent and the notifications agent: it
is closed once the last of them has drained, so no delivery in flight meets a closed
session (a notification failing for that reason would be recorded as a partner's failure)."""

from __future__ import annotations

from streams.http_client import HttpClient


class SharedClient:
    def __init__(self, client: HttpClient, users: int) -> None:
        self.client = client
        self.users = users

    async def release(self) -> None:
        """One user drained; the last one closes the client."""
        self.users -= 1
        if self.users == 0:
            await self.client.close()
