"""The lead loop: each fetched lead runs as its own task as soon as it arrives, up to a cap
of leads in flight, so one slow partner call or an open batch window holds back only its
own lead, never the next fetch. Finished outputs are written in groups; an input message
is acked only after Kafka acknowledged its output, and a partition's commit stops at its
oldest unacked message (agents.commit_ledger), so whatever is not written is read again
after a crash.

Under exactly-once (``in_order``) a finished output is also held until every lead before it
in its partition finished: outputs are written in input order, so a transaction never holds
an output whose input's offset it cannot commit (a lead behind a slow one, committed with its
output while the slow one's offset holds the commit back, would be read again and written
twice after a crash)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

from faust.types import Message

from agents.commit_ledger import CommitLedger
from agents.observe import LeadObserver
from agents.output import EXIT_OUTPUT_FAILED, OutputWriter
from streams.pipeline import Output

log = logging.getLogger(__name__)


class Ledger(Protocol):
    """Faust's consumer as the loop sees it: what is pending, what is done."""

    def track_message(self, message: Message) -> None: ...

    def ack(self, message: Message) -> bool: ...

    def release(self, message: Message) -> None:
        """Given back unfinished: not acked (the commit stays before it, the message is
        read again), and no longer waited for before a commit hands over."""


class LeadLoop:
    def __init__(
        self,
        process: Callable[[Message], Coroutine[Any, Any, Output]],
        consumer: Ledger,
        writer: OutputWriter,
        observer: LeadObserver,
        limit: int,
        clock: Callable[[], float] = time.time,  # wall clock, as aiokafka's fetch times (/ready)
        in_order: bool = False,  # exactly-once: outputs written in input order per partition
    ) -> None:
        self.process = process
        self.clock = clock
        self.consumer = consumer
        self.writer = writer
        self.observer = observer
        self.limit = limit
        self._slots = asyncio.Semaphore(limit)
        self._finished: list[tuple[Message, Output]] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._unwritten = 0  # admitted and not yet acked
        self._tasks: dict[asyncio.Task[Output], Message] = {}  # running leads (asyncio keeps tasks weakly)
        self._given_back: set[asyncio.Task[Output]] = set()  # cancelled by hand_back
        self._admitting = True
        self._waiting_for_slot = False
        self._slot_found_at: float | None = None
        self._order: CommitLedger | None = CommitLedger() if in_order else None
        self._held: dict[tuple[Any, int], tuple[Message, Output]] = {}  # finished, waiting for earlier leads

    def held_back_at(self) -> float | None:
        """When the fetch was last held back by the cap: now while ``admit`` waits for a
        free slot, else when it last got one after waiting; None if it never waited.
        While held back the consumer fetches nothing (aiokafka does not fetch a partition
        whose records are still buffered), so /ready must not read the silence as Kafka's."""
        return self.clock() if self._waiting_for_slot else self._slot_found_at

    @property
    def room(self) -> int:
        """Leads ``admit`` would take now without waiting for a slot."""
        return self.limit - self._unwritten

    @property
    def unwritten(self) -> int:
        """Leads admitted and not yet written and acked (what a stop hands over)."""
        return self._unwritten

    def stop_admitting(self) -> None:
        """From now on ``admit`` takes nothing (the worker is stopping)."""
        self._admitting = False

    async def admit(self, messages: Sequence[Message], current: Callable[[Message], bool]) -> None:
        """Start the messages' leads; waits while the cap is reached (back-pressure on the
        fetch). A message that is no longer ``current`` once a slot is free (a rebalance
        began meanwhile), or comes while stopping, is not taken: it is read again."""
        self.observer.fetched(len(messages))
        spawn = asyncio.get_running_loop().create_task
        for message in messages:
            if self._slots.locked():
                await self._wait_for_slot()
            else:
                await self._slots.acquire()
            if not (self._admitting and current(message)):
                self._slots.release()
                self.consumer.release(message)  # (a stream may have tracked it already)
                continue
            self.consumer.track_message(message)  # Faust waits for it before a commit hands over
            if self._order is not None:
                self._order.take(message.tp, message.offset)
            self._unwritten += 1
            self._idle.clear()
            # The pipeline's coroutine is the task itself: no wrapper coroutine to pass through
            # on every resume of the lead.
            task = spawn(self.process(message))
            self._tasks[task] = message
            task.add_done_callback(self._finish)

    async def _wait_for_slot(self) -> None:
        self._waiting_for_slot = True
        try:
            await self._slots.acquire()
        finally:
            self._waiting_for_slot = False
            self._slot_found_at = self.clock()

    def hand_back(self) -> None:
        """Cancel everything running and give its messages back unacked (they are read
        again from the partition's commit): for work that may wait long and can be
        repeated, notification deliveries behind a rate limit, which a hand-over must
        not wait for. Outputs already finished are still written (in order: those held
        behind a lead given back are given back too)."""
        for task in self._tasks:
            if not task.done():
                self._given_back.add(task)
                task.cancel()
        if self._order is not None:
            for message, _ in self._held.values():
                self._give_back(message)
            self._held.clear()
            self._order = CommitLedger()  # what is still running is given back as it ends

    def _give_back(self, message: Message) -> None:
        self.consumer.release(message)
        self._slots.release()
        self._count_written(1)

    def _finish(self, task: asyncio.Task[Output]) -> None:
        message = self._tasks.pop(task)
        if task in self._given_back:
            self._given_back.discard(task)
            if task.cancelled() or self._order is not None:  # in order: a later one may be held already
                self._give_back(message)
                return
        if task.cancelled() or task.exception() is not None:  # the pipeline never raises
            # A bug here would leave the message unacked and its partition uncommittable:
            # stop the process uncommitted instead, so the lead is read again.
            error = None if task.cancelled() else task.exception()
            log.critical("lead task failed; exiting uncommitted", exc_info=error or True)
            os._exit(EXIT_OUTPUT_FAILED)
        if self._order is None:
            self._finished.append((message, task.result()))
        else:
            self._release_in_order(message, task.result())
        self._wake.set()

    def _release_in_order(self, message: Message, output: Output) -> None:
        order, tp = self._order, message.tp
        assert order is not None
        if not order.finish(tp, message.offset):  # taken before a hand-back that gave its partition back
            self._give_back(message)
            return
        self._held[tp, message.offset] = (message, output)
        self._finished.extend(self._held.pop((tp, offset)) for offset in order.finished_head(tp))

    async def write_forever(self) -> None:
        """Write what finished (everything that finished while the last write was in
        flight goes in the next one), then ack those messages."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            done, self._finished = self._finished, []
            if not done:
                continue
            outputs = [output for _, output in done]
            messages = [message for message, _ in done]

            # exits the process if Kafka keeps refusing
            await self.writer.write_all(outputs, then=functools.partial(self._ack_all, messages))
            self.observer.written(messages, outputs)
            for _ in done:
                self._slots.release()
            self._count_written(len(done))

    def _ack_all(self, messages: list[Message]) -> None:
        for message in messages:
            self.consumer.ack(message)

    def _count_written(self, count: int) -> None:
        """``count`` admitted messages are off the loop (written and acked, or given back)."""
        self._unwritten -= count
        if self._unwritten == 0:
            self._idle.set()

    async def until_idle(self) -> None:
        """Until every admitted lead is written and acked."""
        await self._idle.wait()

    async def drain(self, grace: float) -> None:
        """Wait until every admitted lead is written and acked. Faust waits for unacked
        messages before it commits and stops, so if they cannot finish within ``grace`` the
        process exits instead: uncommitted, they are read again by the next owner."""
        if self._idle.is_set():
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.until_idle()), grace)
        except (TimeoutError, asyncio.CancelledError):
            log.critical("%d leads not written within %.0fs of shutdown; exiting uncommitted",
                         self._unwritten, grace)  # fmt: skip
            os._exit(EXIT_OUTPUT_FAILED)


def exit_if_it_fails(task: asyncio.Task[None]) -> None:
    """A done callback for the loop's helpers: one that died would stall the worker silently."""
    if not task.cancelled() and task.exception() is not None:
        log.critical("%s failed; exiting uncommitted", task.get_name(), exc_info=task.exception())
        os._exit(EXIT_OUTPUT_FAILED)
