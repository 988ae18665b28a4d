"""The contract between agents.faust_seam's exactly-once parts and the installed aiokafka and
Faust: the KIP-447 request is what the broker expects, aiokafka's sender makes our handler,
the names we read exist. Kafka's answer to a zombie is checked on the broker
(tests/integration/test_exactly_once_on_kafka.py)."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import aiokafka
import pytest
from aiokafka import TopicPartition
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.errors import IllegalGenerationError, UnknownMemberIdError
from aiokafka.producer import sender as aiokafka_sender
from aiokafka.protocol.transaction import TxnOffsetCommitRequest_v0
from aiokafka.structs import OffsetAndMetadata
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from agents.faust_seam import GroupMember, LeadApp, LeadConsumer, member_of
from agents.faust_seam.transactions import (
    MemberTxnOffsetCommitHandler,
    MemberTxnOffsetCommitRequest,
    TxnOffsetCommitRequest_v3,
    TxnOffsetCommitResponse_v3,
)

MEMBER = GroupMember("leadstreams-demo", 7, "member-1", "pod-0")
OFFSETS = {
    TopicPartition("leads", 0): OffsetAndMetadata(42, ""),
    TopicPartition("leads", 1): OffsetAndMetadata(9, ""),
}


def sender() -> SimpleNamespace:
    txn = SimpleNamespace(transactional_id="leadstreams-demo-pod-0", producer_id=1001, producer_epoch=3,
                          offset_committed=lambda tp, offset, group: None)  # fmt: skip
    return SimpleNamespace(_txn_manager=txn, _coordinator_dead=lambda kind: None, _retry_backoff=0.1)


def test_aiokafkas_sender_makes_our_handler_for_transactional_offset_commits() -> None:
    assert aiokafka_sender.TxnOffsetCommitHandler is MemberTxnOffsetCommitHandler
    source = inspect.getsource(aiokafka_sender.Sender)
    assert "TxnOffsetCommitHandler(self, offsets, group_id)" in source  # looked up at call time


def test_a_member_is_sent_as_v3_on_brokers_that_have_it_and_v0_on_older_ones() -> None:
    request = MemberTxnOffsetCommitHandler(sender(), OFFSETS, MEMBER).create_request()
    assert isinstance(request, MemberTxnOffsetCommitRequest)
    v3 = request.prepare({28: (0, 5)})
    assert isinstance(v3, TxnOffsetCommitRequest_v3)
    assert (v3.generation_id, v3.member_id, v3.group_instance_id) == (7, "member-1", "pod-0")
    assert v3.group_id == "leadstreams-demo" and v3.producer_epoch == 3
    assert v3.topics == [("leads", [(0, 42, -1, "", {}), (1, 9, -1, "", {})], {})]
    assert TxnOffsetCommitRequest_v3.decode(v3.encode()).member_id == "member-1"  # a valid v3 body
    v0 = request.prepare({28: (0, 2)})
    assert isinstance(v0, TxnOffsetCommitRequest_v0)


def test_a_plain_group_id_keeps_aiokafkas_request() -> None:
    request = MemberTxnOffsetCommitHandler(sender(), OFFSETS, "some-group").create_request()
    assert not isinstance(request, MemberTxnOffsetCommitRequest)


def v3_answer(code: int) -> TxnOffsetCommitResponse_v3:
    return TxnOffsetCommitResponse_v3(0, [("leads", [(0, code, {}), (1, 0, {})], {})], {})


def test_the_groups_refusals_fail_the_commit() -> None:
    handler = MemberTxnOffsetCommitHandler(sender(), OFFSETS, MEMBER)
    assert handler.handle_response(v3_answer(0)) is None
    with pytest.raises(IllegalGenerationError):
        handler.handle_response(v3_answer(IllegalGenerationError.errno))
    with pytest.raises(UnknownMemberIdError):
        handler.handle_response(v3_answer(UnknownMemberIdError.errno))


def test_the_membership_is_read_from_aiokafkas_group_coordinator() -> None:
    source = inspect.getsource(GroupCoordinator.__init__)
    for name in ("self.generation", "self.member_id", "self._group_instance_id"):
        assert name in source
    coordinator = SimpleNamespace(generation=4, member_id="m", _group_instance_id=None)
    member = member_of(SimpleNamespace(_coordinator=coordinator), "g")
    assert (member, member.generation, member.member_id, member.instance_id) == ("g", 4, "m", None)
    assert not GroupMember("g", -1, "", None).known  # after a kick: never committed with
    assert GroupMember("g", 4, "m", None).known


async def test_under_exactly_once_faust_reads_our_topics_read_committed() -> None:
    app = LeadApp("seam-txn", broker="kafka://127.0.0.1:1", autodiscover=False)
    consumer = app.consumer
    assert isinstance(consumer, LeadConsumer)
    thread = consumer._new_consumer_thread()
    assert thread._create_worker_consumer(consumer.transport)._isolation_level == "read_uncommitted"
    app.transactions = SimpleNamespace()  # type: ignore[assignment]
    assert thread._create_worker_consumer(consumer.transport)._isolation_level == "read_committed"
    assert "isolation_level=self._isolation_level" in inspect.getsource(aiokafka.AIOKafkaConsumer.start)
    assert "generation_id" in inspect.signature(AIOKafkaConsumerThread.on_partitions_assigned).parameters


def test_fausts_livelock_check_reads_the_commit_times_we_set() -> None:
    """Our commit replaces AIOKafkaConsumerThread._commit, which sets them."""
    assert "self.tp_last_committed_at = {}" in inspect.getsource(AIOKafkaConsumerThread)
    assert "self.tp_last_committed_at.get(tp)" in inspect.getsource(AIOKafkaConsumerThread)
