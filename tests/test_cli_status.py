"""`status` without a broker: a member's assignment bytes as DescribeGroups returns them
(the consumer protocol's, with Faust's compressed user data), lag with and without a
commit, and the human form. On the broker: tests/integration/test_status_on_kafka.py."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from rich.console import Console

from agents.cli_status import Watched, _prepare_status, flow_topics, show
from agents.faust_seam.assignment import faust_url
from agents.group_status import GroupStatus, LastOutput, Position, _member
from streams.loader import load_flow

ROOT = Path(__file__).resolve().parents[1]


def described(partitions: list[tuple[str, list[int]]], user_data: bytes) -> dict[str, object]:
    assignment = ConsumerProtocolMemberAssignment(4, partitions, user_data).encode()
    return {"member_id": "m-1", "client_id": "faust-0.15.3", "client_host": "/10.0.0.7",
            "member_metadata": b"", "member_assignment": assignment}  # fmt: skip


def test_a_faust_members_partitions_and_name() -> None:
    user_data = zlib.compress(b'{"url": "http://leadstreams.invalid/instance/pod%2F0", "assignment": {}}')
    member = _member(described([("in", [2, 0]), ("g-__assignor-__leader", [0])], user_data))
    assert member.partitions == {"g-__assignor-__leader": [0], "in": [0, 2]}
    assert (member.host, member.name) == ("10.0.0.7", "pod/0")  # its --instance-id
    web = _member(described([("in", [1])], zlib.compress(b'{"url": "http://127.0.0.1:6066"}')))
    assert web.name == "127.0.0.1:6066"


def test_another_assignors_member_is_named_by_its_id() -> None:
    member = _member(described([("in", [1])], b"range-assignor data"))
    assert (member.url, member.name, member.partitions) == (None, "m-1", {"in": [1]})
    assert faust_url(b"") is None and faust_url(zlib.compress(b"[1]")) is None
    rebalancing = {**described([], b""), "member_assignment": b""}
    assert _member(rebalancing).partitions == {}


def test_lag_counts_from_the_commit_or_from_the_first_offset() -> None:
    assert Position("in", 0, committed=7, start=0, end=10, member=None).lag == 3
    assert Position("in", 0, committed=None, start=4, end=10, member=None).lag == 6  # starts at earliest
    assert Position("in", 0, committed=2, start=4, end=10, member=None).lag == 6  # retention deleted 2, 3


def test_the_human_form_without_members() -> None:
    found = GroupStatus("leadstreams-f", "Empty", "faust")
    found.positions = [Position("leads.in", 0, None, 0, 5, None), Position("leads.in", 1, 3, 0, 3, None)]
    found.outputs = [
        LastOutput("leads.out", 0, 0),
        LastOutput("leads.err", 0, 8, 7, 1_700_000_000_000, "l9", "error", "check: HTTP 503 " + "x" * 80),
    ]
    out = io.StringIO()
    show(found, Console(file=out, width=500, highlight=False, soft_wrap=True), now=1_700_000_090.0)
    lines = [line.rstrip() for line in out.getvalue().splitlines()]
    assert lines[0] == "group leadstreams-f: Empty, no members: no worker runs, lag 5"
    assert lines[2].split() == ["leads.in", "0", "-", "5", "5", "-"]
    assert lines[3].split() == ["leads.in", "1", "3", "3", "0", "-"]
    assert lines[5].split() == ["leads.out", "0", "-", "empty"]
    assert lines[6].split()[:9] == ["leads.err", "0", "7", "2023-11-14T22:13:20Z", "2m", "ago", "l9", "error",
                                    "check:"]  # fmt: skip
    assert lines[6].endswith("x…") and len(lines[6][lines[6].index("check:") :]) == 60


def test_the_topics_of_a_flow_with_tiers_and_notifications() -> None:
    """The group reads the input, the retry tiers and the notifications queue (and its
    tiers): the lag of each is shown; the outputs are enriched and errors."""
    env = {name: "x" for name in ("VALIDATOR_KEY", "BUYER_TOKEN", "CRM_WEBHOOK_SECRET", "SLACK_HOOK_TOKEN")}
    loaded = load_flow(ROOT / "examples" / "flows" / "notify-webhooks.yaml", env)
    read, written = flow_topics(loaded)
    tiers = ["1s", "2s", "4s", "8s", "10s"]
    assert read == [
        "leads.hooks.in",
        *(f"leads.hooks.retry.{tier}" for tier in tiers),
        "leads.hooks.notify",
        *(f"leads.hooks.notify.retry.{tier}" for tier in tiers),
    ]
    assert written == ["leads.hooks.out", "leads.hooks.errors"]


def test_a_flow_without_its_partners_secrets_is_read_for_its_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator's shell has no partner secrets: status needs only the topics' names."""
    for name in (
        "INTERNAL_API_KEY",
        "VALIDATOR_KEY",
        "BUYER_TOKEN",
        "CRM_WEBHOOK_SECRET",
        "SLACK_HOOK_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    demo = _prepare_status({"flow": str(ROOT / "examples" / "flows" / "demo.yaml")})["watched"]
    assert demo == Watched("lead-validation", ["leads.incoming"], ["leads.enriched", "leads.errors"])
    hooks = _prepare_status({"flow": str(ROOT / "examples" / "flows" / "notify-webhooks.yaml")})["watched"]
    assert (hooks.name, hooks.read) == ("notify-webhooks", ["leads.hooks.in"])
    assert hooks.left_out == (
        "retry tiers and notification topics left out: FLOW loads whole with BUYER_TOKEN, "
        "CRM_WEBHOOK_SECRET, SLACK_HOOK_TOKEN, VALIDATOR_KEY set"
    )
