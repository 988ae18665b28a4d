"""Faust's consumer with our commit rule and the lead intake, and the app that makes it.

Every message Faust or the lead intake starts (both add it to the consumer's set of
unacked messages) is *taken* in the :class:`agents.commit_ledger.CommitLedger`, every
ack *finishes* it, and ``_new_offset`` asks the ledger; Faust's own ack lists and gap
trees are no longer fed. The lead topic's fetched records go to the intake a fetch at a
time (``_drain_messages``). Private names used: see tests/test_faust_seam.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from time import monotonic
from typing import Any, NoReturn, Protocol
from weakref import WeakSet

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from agents.commit_ledger import CommitLedger
from agents.faust_seam.fetch_wait import FetchWait, hold_whole_fetches
from agents.faust_seam.transactions import GroupMember, member_of

log = logging.getLogger(__name__)


class Intake(Protocol):
    topics: frozenset[str]
    chunk: int  # messages handed over at most at once

    async def deliver(self, messages: list[Message]) -> None:
        """Take the messages (waiting is back-pressure on the fetch). A message the
        intake does not track is not acked, so it is read again."""


class Gate(Protocol):
    def exclusive(self) -> AbstractAsyncContextManager[None]:
        """No write in flight while held (agents.write_gate)."""


class Transactions(Protocol):
    """The worker's transactional producer (agents.transactions), under exactly-once."""

    gate: Gate

    async def stop(self) -> None: ...

    async def commit(self, offsets: Mapping[tuple[str, int], int], member: GroupMember) -> None:
        """Commits the open transaction with these offsets, or ends the process."""

    async def abort_and_exit(self, why: str) -> NoReturn: ...

    async def until_visible(self, group: str, offsets: Mapping[tuple[str, int], int]) -> None:
        """Until the group's committed offsets read back at least these."""


class TakenMessages(WeakSet[Message]):
    """Faust's set of unacked messages (a WeakSet). Faust's streams add to it directly
    (``Stream._py_aiter`` inlines ``track_message``) and the intake through
    ``track_message``: either way the message is taken in the ledger."""

    def __init__(self, ledger: CommitLedger, acks_enabled_for: Any) -> None:
        super().__init__()
        self.ledger = ledger
        self.acks_enabled_for = acks_enabled_for

    def add(self, message: Message) -> None:
        super().add(message)
        if self.acks_enabled_for(message.topic):  # changelogs are not committed
            self.ledger.take(message.tp, message.offset)


class LeadConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """Faust's consumer thread, making aiokafka's consumer with the app's fetch waits."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        """Faust's aiokafka consumer with the app's short fetch wait instead of Faust's fixed
        1500 ms. aiokafka keeps one fetch in flight per broker and leaves out of it the
        partitions whose fetched records are not consumed yet; so while the leads' records
        were being handed over, a fetch for only the idle partitions (retry tiers, a
        notifications stream behind) could be sent, and the broker held it for the whole
        wait: new leads waited up to 1.5 s before being fetched (tests/integration/
        test_notifications_on_kafka.py measured p50 ~1 s). A fetch leaving nothing out may
        wait long (``on_start``)."""
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms  # read when it starts its fetcher
        if self.app.transactions is not None:
            # Our own topics (retry tiers, notifications) are written in transactions: an aborted
            # one's records must stay unread. (Faust's switch for it also starts its own
            # transaction manager, which is not ours: agents.transactions says why.)
            consumer._isolation_level = "read_committed"
        return consumer

    async def on_start(self) -> None:
        """Starts aiokafka's consumer (Faust's), then lets the broker hold a fetch for
        ``fetch_idle_wait_ms`` when it asks for every partition the worker reads from that
        broker: an idle worker sends ~2 fetches a second instead of ~45, and any new record
        still ends the wait at once (agents.faust_seam.fetch_wait says why)."""
        await super().on_start()
        wait = FetchWait(whole_ms=self.app.fetch_idle_wait_ms, partial_ms=self.app.fetch_max_wait_ms)
        hold_whole_fetches(self._ensure_consumer(), wait)


class LeadConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer with our commit rule, and the intake's topics skipping
    the streams."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ledger = CommitLedger()
        self.last_commits: dict[TP, int] = {}  # what this worker committed last, per partition
        self.first_read: dict[TP, int] = {}  # the first lead read of a partition since its assignment
        self._unacked_messages = TakenMessages(self.ledger, self.app.topics.acks_enabled_for)
        self.member: GroupMember | None = None  # as assigned: what a transactional commit carries
        self.owned: set[TP] = set()  # assigned to this member, until revoked (a transaction's check)
        self.revoking: set[TP] | None = None  # the partitions being revoked, while they are

    def _new_consumer_thread(self) -> LeadConsumerThread:
        return LeadConsumerThread(self, loop=self.loop, beacon=self.beacon)

    # -- the commit rule -------------------------------------------------------------

    def ack(self, message: Message) -> bool:
        """The message finished: the ledger may commit past it. Replaces Faust's ack,
        which fed the lists its own ``_new_offset`` read."""
        with ack_lock:  # as Faust: the test-and-set of ``acked`` is one step
            if message.acked:
                return False
            message.acked = True
            self._unacked_messages.discard(message)
            finished = self.ledger.finish(message.tp, message.offset)
            if finished:
                self._n_acked += 1  # Faust's broker_commit_every counts these
            notify(self._waiting_for_ack)  # wakes wait_empty (rebalance, stop)
            return finished

    def hold(self, message: Message) -> None:
        """Fetched and not taken (its flow was removed): the commit stays before it until its
        partition is revoked, so it is read again by whoever runs the flow next."""
        with ack_lock:
            self.ledger.take(message.tp, message.offset)

    def release(self, message: Message) -> None:
        """Given back unfinished (agents.inflight.LeadLoop.hand_back): not acked, so the
        ledger's commit stays before it and it is read again; no longer waited for."""
        with ack_lock:
            self._unacked_messages.discard(message)
            notify(self._waiting_for_ack)  # wakes wait_empty (rebalance, stop)

    def _new_offset(self, tp: TP) -> int | None:
        with ack_lock:  # the ledger changes under the same lock as in ack
            return self.ledger.committable(tp)

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        for tp in self.ledger.with_finished_head():
            if topics is None or tp in topics or tp.topic in topics:
                yield tp

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        # Read now, while the consumer thread waits for this callback: later, a kick resets it
        # to generation -1, which the broker accepts for a transactional commit.
        self.member = member_of(self._thread._ensure_consumer(), self.app.conf.id)
        self.owned = {TP(tp.topic, tp.partition) for tp in assigned}
        await super().on_partitions_assigned(assigned, generation_id)

    def assignment(self) -> set[TP]:
        """While partitions are revoked, they are still ours. aiokafka forgets its assignment
        the moment the subscription changes (a flow added or removed), before it revokes; Faust's
        revoke would then neither clear its streams' buffers, nor wait for the leads taken, nor
        commit them (tests/integration/test_many_flows_on_kafka.py saw them written twice).
        (Only then: Faust's fetch asks aiokafka about what this answers, and aiokafka asserts
        the partitions are its own.)"""
        owned = super().assignment()
        return owned | self.revoking if self.revoking is not None else owned

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self.revoking = set(revoked)
        try:
            await super().on_partitions_revoked(revoked)  # waits for taken leads, commits
            transactions: Transactions | None = self.app.transactions
            if transactions is not None:  # the next owner must read this commit, not the one before
                last = self.last_commits
                committed = {(tp.topic, tp.partition): last[tp] for tp in revoked if tp in last}
                await transactions.until_visible(self.app.conf.id, committed)
        finally:
            self.revoking = None
            self.owned -= {TP(tp.topic, tp.partition) for tp in revoked}
            self.ledger.forget(revoked)  # the next owner reads them from their commit
            for tp in revoked:
                self.first_read.pop(tp, None)

    # -- what the stop reports -------------------------------------------------------

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        transactions: Transactions | None = self.app.transactions
        if transactions is None:
            committed, offsets = await self._commit_plain(offsets)
        else:
            committed, offsets = await self._commit_transaction(transactions, offsets)
        if committed:
            self.last_commits.update(offsets)
        return committed

    async def _commit_plain(self, offsets: Mapping[TP, int]) -> tuple[bool, Mapping[TP, int]]:
        """At-least-once: aiokafka commits only partitions of its current subscription's
        assignment, which a subscription change (a flow added or removed) has just emptied: what
        it holds is left uncommitted (read again; agents.flow_set committed just before the change)."""
        kept = self._thread.assignment()
        plain = {tp: offset for tp, offset in offsets.items() if tp in kept}
        if len(plain) < len(offsets):
            left = sorted(f"{tp.topic}[{tp.partition}]@{o}" for tp, o in offsets.items() if tp not in kept)
            log.warning("not committed (the subscription changed): %s; read again after the rebalance", left)
        return (bool(await super()._commit(plain)) if plain else False), plain

    async def _commit_transaction(
        self, transactions: Transactions, offsets: Mapping[TP, int]
    ) -> tuple[bool, Mapping[TP, int]]:
        """Under exactly-once: the open transaction holds outputs whose inputs were acked;
        commit it with their offsets. Faust computed ``offsets`` before the writes in flight
        were acked: with the gate held (none in flight) the runs acked since are added, so no
        output is committed without its input's offset."""
        async with transactions.gate.exclusive():
            with ack_lock:
                later = {tp: self.ledger.committable(tp) for tp in list(self.ledger.with_finished_head())}
            assigned = self.owned  # (aiokafka's empties when the subscription changes, before the revoke)
            merged = {tp: offset for tp, offset in {**offsets, **later}.items() if offset is not None}
            to_commit = {tp: offset for tp, offset in merged.items() if tp in assigned}
            if len(to_commit) < len(merged):  # acked outputs of a partition we no longer own
                await transactions.abort_and_exit(f"outputs written for partitions no longer assigned: "
                                                  f"{sorted(set(merged) - set(to_commit))}")  # fmt: skip
            if not to_commit:
                return False, to_commit
            member = self.member
            if member is None or not member.known:
                await transactions.abort_and_exit("no group membership to commit with (left the group)")
            await transactions.commit({(tp.topic, tp.partition): o for tp, o in to_commit.items()}, member)
        # Faust's livelock check reads when each partition last committed (set by the commit
        # path this one replaces): without it, "has not committed at all" ERRORs.
        self._thread.tp_last_committed_at.update(dict.fromkeys(to_commit, monotonic()))
        return True, to_commit

    def uncommitted(self) -> int:
        """Leads read since this worker's last commit of their partition (or since the
        assignment): what the next owner reads again if this worker exits now."""
        read = self._read_offset
        total = 0
        for tp, first in list(self.first_read.items()):
            last = read.get(tp)
            if last is not None:
                total += max(0, last - self.last_commits.get(tp, first) + 1)
        return total

    # -- the lead intake -------------------------------------------------------------

    async def _drain_messages(self, fetcher: Any) -> None:  # Faust's fetch loop, a fetch at a time
        intake: Intake | None = getattr(self.app, "intake", None)
        if intake is None:
            await super()._drain_messages(fetcher)
            return
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                ait = self.getmany(timeout=1.0)
                await self.sleep(0)  # as Faust: getmany may not yield to the loop
                if not self.should_stop:
                    await self._deliver(intake, ait)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except Exception:  # Faust's fetcher then crashes the app: the worker exits, uncommitted
            log.exception("fetching leads failed")
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _deliver(self, intake: Intake, fetched: Any) -> None:
        """One fetch: Faust's read offsets and commit cadence kept; the intake's messages
        in chunks of at most ``intake.chunk``, in the fetch's round-robin order over
        partitions. (No gap bookkeeping: the ledger steps over offsets never fetched.)"""
        read_offsets = self._read_offset
        lead_topics = intake.topics  # (flows come and go between fetches, not within one)
        leads: list[Message] = []
        async for tp, message in fetched:
            offset = message.offset
            read = read_offsets[tp]
            if read is not None and offset < read:
                continue  # read before (Faust drops these too)
            if self._commit_every is not None and self._n_acked >= self._commit_every:
                self._n_acked = 0
                await self.commit()
            if message.topic in lead_topics:
                if tp not in self.first_read:
                    self.first_read[tp] = offset
                leads.append(message)
                if len(leads) >= intake.chunk:
                    await intake.deliver(leads)
                    leads = []
            else:
                await self.wait_first(self.callback(message), self.suspend_flow.wait())
            read_offsets[tp] = offset
        if leads:
            await intake.deliver(leads)


class LeadTransport(aiokafka_driver.Transport):
    Consumer = LeadConsumer


class InFlight(Protocol):
    @property
    def unwritten(self) -> int:
        """Leads taken and not yet written and acked."""

    def held_back_at(self) -> float | None:
        """When its cap last held the fetch back (now while it does), None if never."""


class LeadApp(faust.App):
    """A Faust app whose consumer hands ``intake``'s topics to it (None: Faust's path),
    with what its worker's start and stop lines say."""

    intake: Intake | None = None
    leads: InFlight | None = None  # the lead loop, once the agent runs
    summary: str = ""  # flow, topics, web address: the "started" line
    shutdown_grace: float = 30.0  # seconds the leads in flight get to be written on a stop
    fetch_max_wait_ms: int = 20  # how long the broker may hold a fetch with no new records...
    fetch_idle_wait_ms: int = 500  # ...and one asking for all the partitions of its broker
    kafka_reachable: Callable[[], bool] = staticmethod(lambda: True)  # type: ignore[assignment]
    transactions: Transactions | None = None  # exactly-once: the worker's transactional producer
    flows: Any = None  # the worker's flows (agents.flow_set.FlowSet)

    async def on_shutdown(self) -> None:
        await super().on_shutdown()
        if self.transactions is not None:  # after the consumer's last commit (a child, stopped before)
            await self.transactions.stop()

    def _new_transport(self) -> LeadTransport:
        return LeadTransport(self.conf.broker_consumer, self)

    def in_flight(self) -> int:
        return self.leads.unwritten if self.leads is not None else 0

    def fetch_held_back_at(self) -> float | None:
        return self.leads.held_back_at() if self.leads is not None else None
