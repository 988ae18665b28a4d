"""KIP-447 offset commits for aiokafka's transactional producer: a zombie is fenced by the group.

aiokafka 0.14 sends ``TxnOffsetCommit`` v0 only: no generation, no member id. Kafka accepts a
v0 transactional offset commit from anyone (group-coordinator ``OffsetMetadataManager``: the
member is checked only when one is sent), so a worker that lost its partitions in a rebalance
it slept through could still commit its outputs and their offsets, and the lead would be
written twice. Here the request is v3 (brokers >= 2.5) carrying the generation, member id and
instance id this worker had when it was *assigned* its partitions: after a rebalance the broker
answers ILLEGAL_GENERATION (or UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID) and the transaction
commits nothing (docs/exactly-once-design.md measured both).

The group id handed to ``send_offsets_to_transaction`` is a :class:`GroupMember`: a ``str``
(AddOffsetsToTxn sends it as the group id) that carries the member. Any other group id keeps
aiokafka's v0 request, so nothing else changes.

Private names used (aiokafka): ``aiokafka.producer.sender.TxnOffsetCommitHandler`` (its
``create_request``, ``handle_response``, ``_group_id``, ``_offsets``, ``_sender._txn_manager``),
the protocol's ``Request``/``RequestStruct``/``Response`` and compact types, and the consumer
coordinator's ``generation``, ``member_id`` and ``_group_instance_id``. tests/test_faust_seam.py
holds a contract test for each.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiokafka.producer import sender as aiokafka_sender
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.transaction import TxnOffsetCommitRequest_v0
from aiokafka.protocol.types import (
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Int64,
    Schema,
    TaggedFields,
)

API_KEY = 28  # TxnOffsetCommit
UNKNOWN_LEADER_EPOCH = -1


class GroupMember(str):
    """The consumer group's id, carrying this worker's membership as it was assigned."""

    generation: int
    member_id: str
    instance_id: str | None

    def __new__(cls, group_id: str, generation: int, member_id: str, instance_id: str | None) -> GroupMember:
        member = super().__new__(cls, group_id)
        member.generation, member.member_id, member.instance_id = generation, member_id, instance_id
        return member

    def __repr__(self) -> str:
        return f"GroupMember({str(self)!r}, generation={self.generation}, member_id={self.member_id!r})"

    @property
    def known(self) -> bool:
        """Joined: a commit may carry it (after a kick aiokafka resets it to -1 and "", which
        the broker would accept for a transactional commit, so a commit needs a known one)."""
        return self.generation >= 0 and bool(self.member_id)


def member_of(aiokafka_consumer: Any, group_id: str) -> GroupMember:
    """An aiokafka consumer's membership of ``group_id``, read while its rebalance callback runs."""
    group = aiokafka_consumer._coordinator
    return GroupMember(group_id, group.generation, group.member_id, group._group_instance_id)


class TxnOffsetCommitResponse_v3(Response):
    API_KEY = API_KEY
    API_VERSION = 3
    FLEXIBLE_VERSION = True
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("topics", CompactArray(
            ("name", CompactString("utf-8")),
            ("partitions", CompactArray(
                ("partition_index", Int32), ("error_code", Int16), ("tags", TaggedFields)
            )),
            ("tags", TaggedFields),
        )),
        ("tags", TaggedFields),
    )  # fmt: skip


class TxnOffsetCommitRequest_v3(RequestStruct):
    API_KEY = API_KEY
    API_VERSION = 3
    FLEXIBLE_VERSION = True
    RESPONSE_TYPE = TxnOffsetCommitResponse_v3
    SCHEMA = Schema(
        ("transactional_id", CompactString("utf-8")),
        ("group_id", CompactString("utf-8")),
        ("producer_id", Int64),
        ("producer_epoch", Int16),
        ("generation_id", Int32),
        ("member_id", CompactString("utf-8")),
        ("group_instance_id", CompactString("utf-8")),
        ("topics", CompactArray(
            ("name", CompactString("utf-8")),
            ("partitions", CompactArray(
                ("partition_index", Int32),
                ("committed_offset", Int64),
                ("committed_leader_epoch", Int32),
                ("committed_metadata", CompactString("utf-8")),
                ("tags", TaggedFields),
            )),
            ("tags", TaggedFields),
        )),
        ("tags", TaggedFields),
    )  # fmt: skip


class MemberTxnOffsetCommitRequest(Request[TxnOffsetCommitRequest_v0 | TxnOffsetCommitRequest_v3]):
    """v3 with the member when the broker has it (Kafka >= 2.5), else v0 as aiokafka sends."""

    API_KEY = API_KEY

    def __init__(self, transactional_id: str, member: GroupMember, producer_id: int, producer_epoch: int,
                 topics: list[tuple[str, list[tuple[int, int, str]]]]) -> None:  # fmt: skip
        self.head = (transactional_id, str(member), producer_id, producer_epoch)
        self.member = member
        self.topics = topics

    def build(self, request_struct_class: type[Any]) -> Any:
        if request_struct_class is TxnOffsetCommitRequest_v0:
            return TxnOffsetCommitRequest_v0(*self.head, self.topics)
        member = self.member
        topics = [
            (topic, [(part, offset, UNKNOWN_LEADER_EPOCH, meta, {}) for part, offset, meta in parts], {})
            for topic, parts in self.topics
        ]
        return request_struct_class(
            *self.head, member.generation, member.member_id, member.instance_id, topics, {}
        )


class MemberTxnOffsetCommitHandler(aiokafka_sender.TxnOffsetCommitHandler):  # type: ignore[misc]
    """aiokafka's handler, sending the member when the group id carries one."""

    def create_request(self) -> Any:
        request = super().create_request()
        if not isinstance(self._group_id, GroupMember):
            return request
        txn = self._sender._txn_manager
        return MemberTxnOffsetCommitRequest(
            txn.transactional_id, self._group_id, txn.producer_id, txn.producer_epoch, request._topics
        )

    def handle_response(self, resp: Any) -> Any:
        if hasattr(resp, "errors"):  # v0
            return super().handle_response(resp)
        # v3: the same errors, with tags beside them. aiokafka raises on the group's errors
        # (ILLEGAL_GENERATION ...), which fails the commit: the writer then aborts by
        # re-initialising its transactional id (agents.transactions says why not abort).
        errors = [(topic, [(part, code) for part, code, _ in parts]) for topic, parts, _ in resp.topics]
        return super().handle_response(SimpleNamespace(errors=errors))


def install() -> None:
    """aiokafka's sender makes our handler for every transactional offset commit."""
    aiokafka_sender.TxnOffsetCommitHandler = MemberTxnOffsetCommitHandler


install()
