"""Issue #16.1: a lead's id reaches the partner in the automatic ``Idempotency-Key`` header,
so it gets the same checks as every other header value (no traceback, a step error)."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from helpers import make_flow, run_once
from hypothesis import given
from hypothesis import strategies as st

from streams.headers import IDEMPOTENCY_HEADER, idempotency_key
from streams.http_types import RequestBuildError
from streams.outcomes import Outcome
from streams.step.request import build_request

# Lead ids come from JSON (no lone surrogates) or from Kafka keys decoded as UTF-8.
LEAD_IDS = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1)
UNREACHABLE = "http://127.0.0.1:9"  # nothing is sent: the request is refused while it is built


@pytest.mark.parametrize("lead_id", ["L1\r\nX-Evil: 1", "L1\nX", "L1\rX", "L1\x00"])
def test_idempotency_key_refuses_cr_lf_nul_naming_the_header(lead_id: str) -> None:
    with pytest.raises(RequestBuildError, match="'Idempotency-Key' refused"):
        idempotency_key(lead_id, "validate")


def test_ascii_ids_are_sent_as_before_and_non_ascii_ids_percent_encoded() -> None:
    assert idempotency_key("lead 42", "validate") == "lead 42:validate"
    assert idempotency_key("lead-é", "validate") == "lead-%C3%A9:validate"


@given(LEAD_IDS)
def test_property_idempotency_key_is_exact_ascii_or_refused(lead_id: str) -> None:
    unsafe = any(c in lead_id for c in "\r\n\x00")
    try:
        key = idempotency_key(lead_id, "step")
    except RequestBuildError as exc:
        assert unsafe and IDEMPOTENCY_HEADER in str(exc)
        return
    assert not unsafe and key.isascii()
    assert (key if lead_id.isascii() else unquote(key)) == f"{lead_id}:step"


FLOW = make_flow(UNREACHABLE, [{"name": "check", "request": {"method": "GET", "url": "/x"}}])


@given(LEAD_IDS)
def test_property_build_request_with_any_lead_id(lead_id: str) -> None:
    try:
        request, _ = build_request(FLOW.steps[0], {"lead": {}, "vars": {}, "settings": {}}, lead_id)
    except RequestBuildError as exc:
        assert any(c in lead_id for c in "\r\n\x00") and IDEMPOTENCY_HEADER in str(exc)
        return
    value = request.headers[IDEMPOTENCY_HEADER]
    assert value.isascii() and not any(c in value for c in "\r\n\x00")


async def test_a_cr_lf_in_the_lead_id_is_a_step_error_and_the_lead_is_kept() -> None:
    lead = {"id": "L1\r\nX-Evil: 1", "email": "a@example.com"}
    result = await run_once(FLOW, dict(lead), lead_id=lead["id"])
    (step,) = result.steps
    assert step.outcome is Outcome.ERROR
    assert step.reason is not None and "'Idempotency-Key' refused" in step.reason
    assert result.lead == lead
