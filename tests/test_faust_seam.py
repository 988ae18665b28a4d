"""The contract between agents.faust_seam and the installed Faust: the private names it
overrides or reads exist, and Faust's commit path asks our ledger. The guarantee itself
is checked on the real broker (tests/integration/test_commit_on_kafka.py)."""

from __future__ import annotations

import inspect

import pytest
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaDriverConsumer
from faust.types import TP, Message

from agents.faust_seam import LeadApp, LeadConsumer, TakenMessages, UnsupportedFaust, check_faust_version

OVERRIDDEN = ["ack", "_new_offset", "_filter_tps_with_pending_acks", "on_partitions_revoked",
              "_drain_messages"]  # fmt: skip
CALLED = ["_filter_committable_offsets", "_should_commit", "track_message", "getmany", "wait_first",
          "commit", "force_commit", "_commit_tps"]  # fmt: skip
ATTRIBUTES = ["_unacked_messages", "_waiting_for_ack", "_n_acked", "_commit_every", "_read_offset",
              "_committed_offset", "_stopped", "diag", "suspend_flow", "callback"]  # fmt: skip


def test_faust_version_is_checked() -> None:
    check_faust_version("0.15.3")
    for version in ("0.14.9", "0.16.0", "1.0.0"):
        with pytest.raises(UnsupportedFaust, match="faust-streaming"):
            check_faust_version(version)


@pytest.mark.parametrize("name", OVERRIDDEN + CALLED)
def test_the_methods_we_override_or_call_exist(name: str) -> None:
    assert callable(getattr(AIOKafkaDriverConsumer, name, None)), f"Faust's consumer has no {name}"


def test_faust_commits_through_the_methods_we_override() -> None:
    """force_commit -> _filter_tps_with_pending_acks -> _commit_tps ->
    _filter_committable_offsets -> _new_offset: the chain our overrides sit in."""
    assert "_filter_tps_with_pending_acks" in inspect.getsource(Consumer.force_commit)
    assert "_filter_committable_offsets" in inspect.getsource(Consumer._commit_tps)
    assert "_new_offset" in inspect.getsource(Consumer._filter_committable_offsets)


@pytest.fixture
async def consumer() -> LeadConsumer:
    app = LeadApp("seam-contract", broker="kafka://127.0.0.1:1", autodiscover=False)
    app.topics.add(app.topic("leads"))
    await app.topics._update_indices()  # what subscribing does: acks are enabled for "leads"
    consumer = app.consumer
    assert isinstance(consumer, LeadConsumer)
    return consumer


@pytest.mark.parametrize("name", ATTRIBUTES)
def test_the_attributes_we_read_exist(consumer: LeadConsumer, name: str) -> None:
    assert hasattr(consumer, name), f"Faust's consumer has no {name}"


def message(offset: int, partition: int = 0) -> Message:
    return Message("leads", partition, offset, 0.0, 0, None, b"k", b"v", None, tp=TP("leads", partition))


def test_tracked_messages_are_taken_and_acks_finish_them(consumer: LeadConsumer) -> None:
    """A slow lead at the head holds the commit, whatever Faust's own guard would do."""
    assert isinstance(consumer._unacked_messages, TakenMessages)
    messages = [message(offset) for offset in range(51)]
    for each in messages:
        consumer.track_message(each)  # the intake's path
    for each in messages[1:]:
        assert consumer.ack(each)
    tps = list(consumer._filter_tps_with_pending_acks())
    assert consumer._filter_committable_offsets(tps) == {}
    assert consumer.ack(messages[0])
    assert not consumer.ack(messages[0])  # acked once
    tps = list(consumer._filter_tps_with_pending_acks())
    assert consumer._filter_committable_offsets(tps) == {TP("leads", 0): 51}
    assert len(consumer._unacked_messages) == 0


def test_faust_streams_inlined_tracking_is_taken_too(consumer: LeadConsumer) -> None:
    """Faust's Stream adds to ``consumer.unacked`` directly instead of track_message."""
    first, second = message(0, partition=1), message(1, partition=1)
    consumer.unacked.add(first)
    consumer.unacked.add(second)
    consumer.ack(second)
    assert consumer._filter_committable_offsets(list(consumer._filter_tps_with_pending_acks())) == {}
    consumer.ack(first)
    assert consumer._new_offset(TP("leads", 1)) == 2


async def test_revoked_partitions_are_forgotten(consumer: LeadConsumer) -> None:
    first = message(0)
    consumer.track_message(first)
    consumer.app.flow_control.resume()
    await consumer.on_partitions_revoked({TP("leads", 0)})
    assert consumer.ledger.unfinished(TP("leads", 0)) == 0
    assert not consumer.ack(first)  # acked late: counts for nothing
