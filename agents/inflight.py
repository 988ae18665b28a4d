"""The lead loop: each fetched lead runs as its own task as soon as it arrives, up to a cap
of leads in flight, so one slow partner call or an open batch window holds back only its
own lead, never the next fetch. Finished outputs are written in groups; an input event is
acked only after Kafka acknowledged its output, and Faust commits per partition only up to
the first unacked offset, so whatever is not written is read again after a crash."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence

import faust

from agents.observe import BatchObserver
from agents.output import EXIT_OUTPUT_FAILED, OutputWriter
from streams.pipeline import Output

log = logging.getLogger(__name__)


class LeadLoop:
    def __init__(
        self,
        process: Callable[[faust.EventT], Awaitable[Output]],
        ack: Callable[[faust.EventT], Awaitable[object]],
        writer: OutputWriter,
        observer: BatchObserver,
        limit: int,
    ) -> None:
        self.process = process
        self.ack = ack
        self.writer = writer
        self.observer = observer
        self._slots = asyncio.Semaphore(limit)
        self._finished: list[tuple[faust.EventT, Output]] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._unwritten = 0  # admitted and not yet acked
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        return self._unwritten

    async def admit(self, events: Sequence[faust.EventT]) -> None:
        """Start the events' leads; waits while the cap is reached (back-pressure on the fetch)."""
        self.observer.fetched(len(events))
        for event in events:
            await self._slots.acquire()
            self._unwritten += 1
            self._idle.clear()
            task = asyncio.ensure_future(self._run(event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, event: faust.EventT) -> None:
        try:
            output = await self.process(event)  # never raises: problems are error outputs
        except Exception:
            # A bug here would leave the event unacked and its partition uncommittable:
            # stop the process uncommitted instead, so the lead is read again.
            log.critical("lead task failed; exiting uncommitted", exc_info=True)
            os._exit(EXIT_OUTPUT_FAILED)
        self._finished.append((event, output))
        self._wake.set()

    async def write_forever(self) -> None:
        """Write what finished (everything that finished while the last write was in
        flight goes in the next one), then ack those events."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            done, self._finished = self._finished, []
            if not done:
                continue
            outputs = [output for _, output in done]
            await self.writer.write_all(outputs)  # exits the process if Kafka keeps refusing
            events = [event for event, _ in done]
            for event in events:
                await self.ack(event)
            self.observer.written(events, outputs)
            for _ in done:
                self._slots.release()
            self._unwritten -= len(done)
            if self._unwritten == 0:
                self._idle.set()

    async def drain(self, grace: float) -> None:
        """Wait until every admitted lead is written and acked. Faust waits for unacked
        events before it commits and stops, so if they cannot finish within ``grace`` the
        process exits instead: uncommitted, they are read again by the next owner."""
        if self._idle.is_set():
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._idle.wait()), grace)
        except (TimeoutError, asyncio.CancelledError):
            log.critical("%d leads not written within %.0fs of shutdown; exiting uncommitted",
                         self._unwritten, grace)  # fmt: skip
            os._exit(EXIT_OUTPUT_FAILED)


def exit_if_it_fails(task: asyncio.Task[None]) -> None:
    """A done callback for the loop's helpers: one that died would stall the worker silently."""
    if not task.cancelled() and task.exception() is not None:
        log.critical("%s failed; exiting uncommitted", task.get_name(), exc_info=task.exception())
        os._exit(EXIT_OUTPUT_FAILED)
