"""Sample leads for the demo and the integration tests, each with the result it should get."""

from __future__ import annotations

import random
from dataclasses import dataclass

import orjson

MALFORMED = [
    b'{"email": "broken@',
    b"[1, 2, 3]",
    b'"just a string"',
    b"\xff\xfe not utf-8",
    b"null",
    b'{"id": {"nested": "id"}, "email": "x@y.example"}',
]


@dataclass(frozen=True)
class SampleLead:
    key: bytes | None
    value: bytes
    lead_id: str | None  # None for malformed messages (the worker derives one)
    destination: str  # "enriched" or "errors"
    outcome: str


def sample_leads(count: int, run_id: str, malformed: int = 10, seed: int = 7) -> list[SampleLead]:
    """``count`` messages: mostly clean leads, ~10% blacklisted (failure), ~5% invalid
    email (partner 422 -> error), ~3% without email (skip), and ``malformed`` unusable ones."""
    rng = random.Random(seed)
    leads: list[SampleLead] = []
    for index in range(count - malformed):
        lead_id = f"{run_id}-{index:05d}"
        lead = {
            "id": lead_id,
            "first_name": rng.choice(["Ana", "Bo", "Chen", "Dee"]),
            "phone": f"(555) {rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
            "state": rng.choice(["CA", "TX", "NY"]),
            "ip_address": f"10.0.0.{index % 250}",
            "source": {"id": rng.choice(["web", "partner-7"])},
        }
        roll = rng.random()
        if roll < 0.10:
            lead["email"], expected = f"lead{index}@spam.example", ("enriched", "failure")
        elif roll < 0.15:
            lead["email"], expected = f"lead{index}-at-nowhere", ("errors", "error")
        elif roll < 0.18:
            expected = ("enriched", "skip")
        else:
            lead["email"], expected = f"lead{index}@mail.example", ("enriched", "success")
        leads.append(SampleLead(lead_id.encode(), orjson.dumps(lead), lead_id, *expected))
    for index in range(malformed):
        leads.append(SampleLead(None, MALFORMED[index % len(MALFORMED)], None, "errors", "error"))
    rng.shuffle(leads)
    return leads
