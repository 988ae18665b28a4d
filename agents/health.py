"""``/healthz``: the process is alive and its event loop answers.

A coroutine on the event loop beats every second; a watchdog thread looks at the beats.
When the loop has not beaten for more than ``limit`` seconds it is blocked: the watchdog
logs one WARNING per stall with how long and where (the main thread's stack, taken from
the thread, since the blocked loop cannot report itself), and once the loop beats again
it logs how long the stall lasted.

What ``/healthz`` answers (its handler runs on the loop):
* while the loop is blocked, nothing: the request waits, and a liveness probe's timeout
  fails it (set the probe's ``timeoutSeconds`` below the limit);
* for ``limit`` seconds after a stall longer than ``limit`` ended: 503 with the reason,
  so a probe with a longer timeout, whose request waited through the stall, fails too;
* otherwise 200.

mode's BlockingDetector (Faust's, with --debug) was not used: it raises an exception into
whatever code the loop was running, which here would be a lead's flow or a commit.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

BLOCKED_AFTER = 10.0  # seconds without a beat before the loop counts as blocked
BEAT_EVERY = 1.0


@dataclass
class LoopWatchdog:
    limit: float = BLOCKED_AFTER
    clock: Callable[[], float] = time.monotonic
    main_thread_id: int = field(default_factory=lambda: threading.main_thread().ident or 0)
    last_beat: float | None = None
    stall_reported: bool = False  # the current stall was logged
    last_stall: tuple[float, float] | None = None  # (seconds it lasted, clock when it ended), over the limit
    _stop: threading.Event = field(default_factory=threading.Event)

    # -- on the event loop -------------------------------------------------------------

    def beat(self) -> None:
        now = self.clock()
        if self.last_beat is not None and (lasted := now - self.last_beat) > self.limit:
            self.last_stall = (lasted, now)
            log.warning("event loop answers again after being blocked for %.1fs", lasted)
        self.last_beat = now
        self.stall_reported = False

    async def beat_forever(self, every: float = BEAT_EVERY) -> None:
        while True:
            self.beat()
            await asyncio.sleep(every)

    def reasons(self) -> list[str]:
        """Why the process is not healthy (empty: healthy)."""
        now = self.clock()
        if self.last_beat is not None and (blocked := now - self.last_beat) > self.limit:
            return [f"event loop blocked for {blocked:.1f}s (limit {self.limit:g}s)"]
        if self.last_stall is not None and now - self.last_stall[1] <= self.limit:
            lasted, ended = self.last_stall
            return [f"event loop was blocked for {lasted:.1f}s (limit {self.limit:g}s), "
                    f"{now - ended:.1f}s ago"]  # fmt: skip
        return []

    # -- on the watchdog thread ----------------------------------------------------------

    def check(self) -> None:
        """Log the current stall once, with the main thread's stack."""
        if self.last_beat is None or self.stall_reported:
            return
        blocked = self.clock() - self.last_beat
        if blocked <= self.limit:
            return
        self.stall_reported = True
        frame = sys._current_frames().get(self.main_thread_id)
        where = "".join(traceback.format_stack(frame)).rstrip() if frame is not None else "(no stack)"
        log.warning("event loop blocked for %.1fs (limit %gs); /healthz fails; the main thread is at:\n%s",
                    blocked, self.limit, where)  # fmt: skip

    def start(self, every: float = BEAT_EVERY) -> threading.Thread:
        thread = threading.Thread(target=self._watch, args=(every,), name="loop-watchdog", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def _watch(self, every: float) -> None:
        while not self._stop.wait(every):
            self.check()
