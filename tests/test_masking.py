"""Which setting values are masked: secrets yes, short constants no (they would
rewrite innocent lead data)."""

from __future__ import annotations

import yaml

from streams.loader import parse_flow
from streams.masking import Masker


def flow_with_settings(settings: dict[str, str]):  # type: ignore[no-untyped-def]
    document = {
        "version": 1,
        "name": "m",
        "topics": {"input": "a", "enriched": "b", "errors": "c"},
        "settings": settings,
        "steps": [{"name": "s", "request": {"url": "https://partner.example/x"}}],
    }
    return parse_flow(yaml.safe_dump(document), "m.yaml", {})


def test_short_settings_are_not_masked_and_secrets_are() -> None:
    flow = flow_with_settings({"source_id": "1234", "region": "west", "api_key": "k3y-abcdef"})
    masker = Masker(flow.secrets)
    event = b'{"phone": "5551234", "region": "west", "echo": "k3y-abcdef"}'
    assert masker.json_bytes(event) == b'{"phone": "5551234", "region": "west", "echo": "***"}'
    assert flow.secrets == ["k3y-abcdef"]


def test_a_numeric_secret_in_a_json_number_leaves_valid_json() -> None:
    """A setting sent as a number (``{{ settings.account | int }}``) must not leave
    ``"account":***`` behind: the event would no longer be JSON on the output topic."""
    import orjson

    from streams.masking import Masker

    masker = Masker(["500000", "partner-key-1"])
    event = orjson.dumps({"requested": 500000, "zip": "500000", "note": "key partner-key-1", "n": 7})
    masked = orjson.loads(masker.json_bytes(event))
    assert masked == {"requested": "***", "zip": "***", "note": "key ***", "n": 7}
