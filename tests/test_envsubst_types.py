"""Issue #16.12: ``${ENV}`` in a field the schema wants as a number is that number."""

from __future__ import annotations

import pytest

from streams.loader import parse_flow
from streams.problems import FlowFileError

FLOW = """\
version: 1
name: typed
topics: {input: in, enriched: out, errors: err}
settings:
  zip: "${ZIP:-01234}"
integrations:
  api:
    base_url: https://partner.example
    concurrency: ${CONCURRENCY:-100}
    circuit: {failure_rate: "${FAILURE_RATE:-0.5}", window: 30s, min_calls: "${MIN_CALLS:-20}", open_for: 60s}
    allow_loopback: ${ALLOW_LOOPBACK:-false}
steps:
  - name: submit
    integration: api
    request:
      method: POST
      url: /leads
      json: {zip: "${ZIP:-01234}", campaign: "${CAMPAIGN:-42}"}
"""


def test_numeric_default_in_a_numeric_field_is_a_number() -> None:
    flow = parse_flow(FLOW, "typed.yaml", {})  # was: '100' is not of type 'integer'
    api = flow.integrations["api"]
    assert api.concurrency == 100
    assert api.circuit is not None
    assert (api.circuit.failure_rate, api.circuit.min_calls) == (0.5, 20)
    assert api.allow_loopback is False


def test_numeric_environment_value_in_a_numeric_field_is_a_number() -> None:
    flow = parse_flow(FLOW, "typed.yaml", {"CONCURRENCY": "7", "FAILURE_RATE": "1"})
    assert flow.integrations["api"].concurrency == 7
    assert flow.integrations["api"].circuit.failure_rate == 1  # type: ignore[union-attr]


def test_numeric_looking_text_elsewhere_stays_text() -> None:
    flow = parse_flow(FLOW, "typed.yaml", {"ZIP": "00501"})
    assert flow.settings["zip"] == "00501"
    body = flow.steps[0].request.body
    assert body is not None
    assert body.encode({"lead": {}, "settings": flow.settings}) == b'{"zip":"00501","campaign":"42"}'


def test_a_value_that_is_not_a_number_is_still_refused() -> None:
    with pytest.raises(
        FlowFileError, match=r"typed.yaml:9:5: integrations.api.concurrency: must be an integer"
    ):
        parse_flow(FLOW, "typed.yaml", {"CONCURRENCY": "lots"})
