"""Every use of Faust's private API, in one module, for the Faust versions it was read from.

Two things here reach into Faust's consumer (faust-streaming 0.15.x,
``faust/transport/consumer.py`` and ``faust/transport/drivers/aiokafka.py``):

* **The commit decision.** Faust computes a partition's commit from the acked offsets
  (``Consumer._new_offset``); its guard against passing an unacked message is off by one
  and skipped when nothing was committed yet, so with leads finishing out of order the
  commit passed a lead still in flight, and a crash lost it. Here the commit is decided
  by :class:`agents.commit_ledger.CommitLedger`: every message Faust or the lead intake
  starts (both add it to the consumer's set of unacked messages) is *taken*, every ack
  *finishes* it, and ``_new_offset`` asks the ledger. Faust's own ack lists and gap
  trees are no longer fed.
* **The lead intake.** The lead topic's fetches skip Faust's per-message stream path
  (``_drain_messages``; see :mod:`agents.intake` for why and what it measured).

And the worker's stop and health read a few private names (:class:`LeadWorker`,
:func:`producer_connected`, :func:`last_fetch_time`, :meth:`LeadConsumer.uncommitted`):
mode's signal handlers and printing (``_on_sigint``, ``_say``...), the aiokafka client's
connections, the aiokafka consumer inside Faust's consumer thread, Faust's read offsets
and its commit call (``_commit``).

tests/test_faust_seam.py checks this contract against the installed Faust; the broker
tests in tests/integration/test_commit_on_kafka.py check the guarantee itself.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol
from weakref import WeakSet

import faust
from aiokafka import AIOKafkaProducer
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, Message, ProducerT
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from agents.commit_ledger import CommitLedger
from agents.log_policy import mark_started

log = logging.getLogger(__name__)

SUPPORTED_FAUST = ((0, 15, 2), (0, 16, 0))  # [from, to): the versions this module was read from


class UnsupportedFaust(RuntimeError):
    pass


def check_faust_version(version: str | None = None) -> None:
    """Refuse a Faust whose private API this module was not written against."""
    version = version or importlib.metadata.version("faust-streaming")
    numbers = tuple(int(part) for part in version.split(".")[:3] if part.isdigit())
    low, high = SUPPORTED_FAUST
    if not low <= numbers < high:
        raise UnsupportedFaust(
            f"faust-streaming {version} is installed; leadstreams needs >= {'.'.join(map(str, low))}, "
            f"< {'.'.join(map(str, high))} (its commit rule hooks into Faust's consumer)"
        )


check_faust_version()


class Intake(Protocol):
    topics: frozenset[str]
    chunk: int  # messages handed over at most at once

    async def deliver(self, messages: list[Message]) -> None:
        """Take the messages (waiting is back-pressure on the fetch). A message the
        intake does not track is not acked, so it is read again."""


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


class LeadConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer with our commit rule, and the intake's topics skipping
    the streams."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ledger = CommitLedger()
        self.last_commits: dict[TP, int] = {}  # what this worker committed last, per partition
        self.first_read: dict[TP, int] = {}  # the first lead read of a partition since its assignment
        self._unacked_messages = TakenMessages(self.ledger, self.app.topics.acks_enabled_for)

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

    def _new_offset(self, tp: TP) -> int | None:
        with ack_lock:  # the ledger changes under the same lock as in ack
            return self.ledger.committable(tp)

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        for tp in self.ledger.with_finished_head():
            if topics is None or tp in topics or tp.topic in topics:
                yield tp

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        try:
            await super().on_partitions_revoked(revoked)  # waits for taken leads, commits
        finally:
            self.ledger.forget(revoked)  # the next owner reads them from their commit
            for tp in revoked:
                self.first_read.pop(tp, None)

    # -- what the stop reports -------------------------------------------------------

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        committed = bool(await super()._commit(offsets))
        if committed:
            self.last_commits.update(offsets)
        return committed

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

    async def _drain_messages(self, fetcher: Any) -> None:  # Faust's fetch loop, batched
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
        leads: list[Message] = []
        async for tp, message in fetched:
            offset = message.offset
            read = read_offsets[tp]
            if read is not None and offset < read:
                continue  # read before (Faust drops these too)
            if self._commit_every is not None and self._n_acked >= self._commit_every:
                self._n_acked = 0
                await self.commit()
            if message.topic in intake.topics:
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
    kafka_reachable: Callable[[], bool] = staticmethod(lambda: True)  # type: ignore[assignment]

    def _new_transport(self) -> LeadTransport:
        return LeadTransport(self.conf.broker_consumer, self)

    def in_flight(self) -> int:
        return self.leads.unwritten if self.leads is not None else 0

    def fetch_held_back_at(self) -> float | None:
        return self.leads.held_back_at() if self.leads is not None else None


def aiokafka_producer(producer: ProducerT) -> AIOKafkaProducer:
    """The aiokafka producer inside Faust's (started and stopped with the app)."""
    return producer._ensure_producer()  # type: ignore[attr-defined,no-any-return]


def producer_connected(producer: ProducerT) -> bool:
    """Whether the producer's client holds a live connection to a broker (aiokafka drops a
    connection the broker closed, and the readiness probe's metadata request opens one)."""
    try:
        connections = list(aiokafka_producer(producer).client._conns.values())
    except Exception:  # not started yet, or stopped
        return False
    return any(connection.connected() for connection in connections)


def last_fetch_time(consumer: faust.types.ConsumerT) -> float | None:
    """Unix time of the newest fetch answer over the consumer's assigned partitions
    (aiokafka's ``last_poll_timestamp``: empty answers count), None before the first.
    Read from the main thread while the aiokafka consumer runs in Faust's consumer
    thread: single reads of plain values, and a partition revoked meanwhile is skipped."""
    try:
        kafka = consumer._thread._ensure_consumer()  # type: ignore[attr-defined]
        stamps = [kafka.last_poll_timestamp(tp) for tp in kafka.assignment()]
    except Exception:  # not started, stopping, or the assignment changed while reading
        return None
    known = [stamp for stamp in stamps if stamp is not None]
    return max(known) / 1000 if known else None


STOP_WITHIN = 4.5  # seconds from a stop signal to the process's exit, unless leads are being written
HANDOVER_AFTER_WRITING = 2.0  # seconds for the commit once leads kept past the bound are written


class LeadWorker(faust.Worker):
    """Faust's worker with a stop that never hangs and prints nothing but log lines.

    mode's worker echoes ``-INT-`` on SIGINT and prints its spinner to the terminal, and
    its stop waits for each service (60 s for the consumer thread while Kafka is away,
    then thread tracebacks). Here a stop signal
    * with Kafka unreachable exits at once, with a WARNING of what was left uncommitted
      (no commit can happen; the leads are read again by the next owner);
    * otherwise runs Faust's stop (leads in flight get ``app.shutdown_grace`` to be
      written, then commit and hand-over), bounded: STOP_WITHIN seconds after the signal,
      or the grace while leads are still being written with Kafka reachable (and 2 s more
      for the commit after them), the process exits as above. A second signal exits at once.
    """

    app: LeadApp

    def __init__(self, app: LeadApp, *args: Any, stop_within: float = STOP_WITHIN, **kwargs: Any) -> None:
        super().__init__(app, *args, **kwargs)
        self.spinner = None  # the "started" line says it; no escape codes in logs, nothing non-JSON
        self.stop_within = stop_within
        self.stop_signal: signal.Signals | None = None
        self.stop_started = 0.0
        self.stopped_cleanly = False
        self.up = False  # the "started" line was logged (mode has a `started` property)
        self.writing = False  # the stop's bound was extended for leads being written

    # -- printing: mode prints to stdout/stderr; everything goes through logging ---------

    def _say(self, msg: str, file: Any = None, end: str = "\n", **kwargs: Any) -> None:
        if text := msg.strip():
            log.info("%s", text)

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        if not self._shutdown_immediately:
            self.up = True
            mark_started()
            log.info("started: %s", self.app.summary)

    # -- stopping -----------------------------------------------------------------------

    def _on_sigint(self) -> None:  # mode's carps "-INT- -INT- ..." first
        self.stop_on(signal.SIGINT)

    def _on_sigterm(self) -> None:
        self.stop_on(signal.SIGTERM)

    def stop_on(self, received: signal.Signals) -> None:
        if self.stop_signal is not None:
            self.exit_now(f"a second {received.name}")
            return
        self.stop_signal, self.stop_started = received, time.monotonic()
        self._flag_as_shutdown_by_signal()
        threading.excepthook = quiet_while_stopping
        if not self.up:  # nothing taken yet, nothing to hand over
            self.exit_now(f"{received.name} before the worker started")
            return
        if not self.app.kafka_reachable():
            self.exit_now(f"{received.name} while Kafka is unreachable")
            return
        in_flight = self.app.in_flight()
        log.info("stopping (%s): %s, then committing and handing over the partitions", received.name,
                 f"{in_flight} leads in flight get up to {self.app.shutdown_grace:.0f}s to be written"
                 if in_flight else "no lead in flight")  # fmt: skip
        self.arm(self.stop_within)
        self._schedule_shutdown(received)

    def arm(self, after: float) -> None:
        timer = threading.Timer(after, self.on_deadline)
        timer.daemon = True
        timer.start()

    def on_deadline(self) -> None:  # on the timer's thread
        if self.stopped_cleanly:
            os._exit(0)  # committed and handed over; only mode's loop teardown was left
        elapsed = time.monotonic() - self.stop_started
        if self.app.in_flight() and elapsed < self.app.shutdown_grace and self.app.kafka_reachable():
            self.writing = True
            self.arm(0.5)  # leads are being written: they get the grace
            return
        if self.writing:  # they were written just now: the commit and hand-over follow
            self.writing = False
            self.arm(HANDOVER_AFTER_WRITING)
            return
        if self.stop_signal is None:  # Faust stopped on its own: a crash
            self.exit_now(f"the stop after a crash did not finish within {elapsed:.1f}s", code=1)
        else:
            self.exit_now(f"the stop did not finish within {elapsed:.1f}s of {self.stop_signal.name}")

    def exit_now(self, why: str, code: int = 0) -> None:
        """Exit without a commit: what was read since the last one is read again."""
        try:
            consumer = self.app.consumer
            read = consumer.uncommitted() if isinstance(consumer, LeadConsumer) else 0
            in_flight = self.app.in_flight()
            counts = f"{max(read, in_flight)} leads read since the last commit ({in_flight} in flight)"
        except Exception:  # read from another thread while it changes: say so
            read = in_flight = -1
            counts = "an unknown number of leads"
        if read == in_flight == 0:
            log.warning("exiting without a commit (%s): no lead was read since the last commit", why)
        else:
            log.warning("exiting without a commit (%s): %s will be processed again by the partitions' "
                        "next owner", why, counts)  # fmt: skip
        flush_logs()
        os._exit(code)

    def stop_and_shutdown(self) -> None:  # mode's, with the "stopped" line between the two
        if self.stop_signal is None:  # not stopped by a signal (a crash): bounded the same way
            self.stop_started = time.monotonic()
            self.arm(self.stop_within)
        if self._signal_stop_future and not self._signal_stop_future.done():
            self.loop.run_until_complete(self._signal_stop_future)
        elif not self._stopped.is_set():
            self.loop.run_until_complete(self.stop())
        self.stopped_cleanly = not self.crash_reason
        if self.stopped_cleanly:
            log.info("stopped: %s", self.handover())
        flush_logs()
        self._shutdown_loop()

    def handover(self) -> str:
        consumer = self.app.consumer
        commits = consumer.last_commits if isinstance(consumer, LeadConsumer) else {}
        committed = sorted(f"{tp.topic}[{tp.partition}]@{offset}" for tp, offset in commits.items())
        left = self.app.in_flight()
        uncommitted = f"{left} leads left uncommitted (read again)" if left else "no lead left uncommitted"
        return f"committed {', '.join(committed) or 'nothing'}; {uncommitted}"

    async def _sentinel_task(self) -> None:  # mode sleeps 1 s before closing the loop
        await asyncio.sleep(0)


def quiet_while_stopping(args: threading.ExceptHookArgs) -> None:
    """Faust's consumer thread, stopped while aiokafka still waits on a fetch or a broker
    that is away, ends with a CancelledError: expected while stopping, so no traceback."""
    log.debug("thread %s ended while stopping", args.thread.name if args.thread else "?",
              exc_info=(args.exc_type, args.exc_value, args.exc_traceback))  # fmt: skip


def flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()
