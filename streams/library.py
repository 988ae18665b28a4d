"""The engine as a library: load a flow and run a lead through it, with no Kafka.

``asyncio.run(run_lead(load_flow("my-flow.yaml"), {"id": "L1", "email": "ann@example.com"}))``
gives the lead's ``FlowResult`` (README, *Architecture*)."""

from __future__ import annotations

import os
import uuid
from typing import Any

from streams.flow import Flow
from streams.http_client import HttpClient
from streams.loader import load_flow
from streams.outcomes import FlowResult
from streams.runner import FlowRunner
from streams.transport import Transport

__all__ = ["load_flow", "run_lead"]


async def run_lead(
    flow: Flow | str | os.PathLike[str],
    lead: dict[str, Any],
    *,
    lead_id: str | None = None,
    client: Transport | None = None,
) -> FlowResult:
    """The lead's result (its outcome, reason, enriched lead and each step's result); ``lead``
    itself is not changed. ``flow`` is a loaded flow or a flow file's path. ``lead_id`` (for
    the ``Idempotency-Key``) defaults to the lead's ``id``, else a new random one. With no
    ``client``, one is opened for this lead and closed after it: pass one (an
    ``HttpClient``) to reuse its connections over many leads."""
    if not isinstance(flow, Flow):
        flow = load_flow(flow)
    if lead_id is None:
        given = lead.get("id")
        lead_id = str(given) if isinstance(given, str | int) and given != "" else str(uuid.uuid4())
    own = client is None
    transport: Transport = HttpClient() if client is None else client
    try:
        return await FlowRunner(flow, transport).run(lead, lead_id)
    finally:
        if own:
            await transport.close()
