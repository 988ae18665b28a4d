"""Faust's worker with a stop that never hangs and prints nothing but log lines.

Private names used (mode's ``Worker``): ``_say``, ``_on_sigint``, ``_on_sigterm``,
``_flag_as_shutdown_by_signal``, ``_schedule_shutdown``, ``_shutdown_immediately``,
``_signal_stop_future``, ``_stopped``, ``_shutdown_loop``, ``_sentinel_task``; and what the
stop reports comes from :meth:`LeadConsumer.uncommitted` and ``last_commits``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from typing import Any

import faust

from agents.faust_seam.consumer import LeadApp, LeadConsumer
from agents.log_policy import mark_started

log = logging.getLogger(__name__)

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
