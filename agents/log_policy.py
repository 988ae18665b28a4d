"""What of Faust's, mode's and aiokafka's logging a person reads.

A filter on the worker's log handler (so it sees every record, whichever logger it came
from, in the consumer's thread as in the main one):

* **Chatter to DEBUG.** Their INFO records (each service's ``[^--Producer]: Starting...``
  and ``Stopping...``, aiokafka's group join/sync steps) are demoted to DEBUG; the worker
  logs its own lines for what a person needs (started, assigned, revoked, stopping,
  stopped).
* **The start-up coordinator error to DEBUG.** Right after a group's first join the
  broker answers ``GroupCoordinatorNotAvailableError`` until the offsets topic is ready,
  and aiokafka logs that at ERROR although it retries and succeeds a moment later. Until
  the worker has started (:func:`mark_started`) it is DEBUG, so a normal start logs no
  ERROR; later it is one more cause, folded as below.
* **Floods folded by cause.** With Kafka away aiokafka logs each failed connect,
  metadata update, fetch and coordinator request, ~65 ERROR lines a second. A record of
  theirs whose cause (logger + message with the numbers taken out) was logged in the
  last ``window`` seconds is counted, not printed; the next one after the window is
  printed with the count. aiokafka's connection errors print as WARNING: the worker
  retries them by itself, and ``/ready`` says the worker is not ready meanwhile.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

FOLD_WINDOW = 30.0
MAX_CAUSES = 1000  # distinct causes remembered (numbers are taken out, so few in practice)
LIBRARIES = ("faust", "mode", "aiokafka")
SERVICE_PREFIX = "[^"  # how mode's services prefix their log lines (LeadApp's log under agents.*)
STARTUP_TRANSIENT = "GroupCoordinatorNotAvailableError"

_started = threading.Event()


def mark_started() -> None:
    """The worker has started: transient start-up errors are real causes from now on."""
    _started.set()


def reset_started() -> None:  # for tests
    _started.clear()


def from_library(name: str) -> bool:
    return any(name == lib or name.startswith(lib + ".") for lib in LIBRARIES)


def set_level(record: logging.LogRecord, level: int) -> None:
    record.levelno = level
    record.levelname = logging.getLevelName(level)


@dataclass
class _Cause:
    printed_at: float
    unprinted: int = 0


class LogPolicy(logging.Filter):
    def __init__(
        self,
        level: int | str = logging.INFO,
        window: float = FOLD_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.level = logging.getLevelName(level.upper()) if isinstance(level, str) else level
        self.window = window
        self.clock = clock
        self._causes: dict[tuple[str, str], _Cause] = {}
        self._lock = threading.Lock()  # aiokafka's consumer logs from Faust's consumer thread

    def filter(self, record: logging.LogRecord) -> bool:
        library = from_library(record.name)
        service = isinstance(record.msg, str) and record.msg.startswith(SERVICE_PREFIX)
        if not (library or service):
            return record.levelno >= self.level  # ours: as logged
        message = record.getMessage()
        if record.levelno < logging.WARNING:
            set_level(record, min(record.levelno, logging.DEBUG))
        elif STARTUP_TRANSIENT in message and not _started.is_set():
            set_level(record, logging.DEBUG)
        elif record.name.startswith("aiokafka") and record.levelno == logging.ERROR:
            set_level(record, logging.WARNING)
        if record.levelno < self.level:
            return False
        if record.levelno < logging.WARNING:
            return True
        return self._fold(record, message)

    def _fold(self, record: logging.LogRecord, message: str) -> bool:
        key = (record.name, re.sub(r"\d+", "#", message)[:300])
        now = self.clock()
        with self._lock:
            cause = self._causes.get(key)
            if cause is not None and now - cause.printed_at < self.window:
                cause.unprinted += 1
                return False
            if cause is None:
                if len(self._causes) >= MAX_CAUSES:
                    self._causes.pop(next(iter(self._causes)))
                self._causes[key] = _Cause(now)
                return True
            repeated, since = cause.unprinted + 1, now - cause.printed_at
            cause.printed_at, cause.unprinted = now, 0
        record.msg, record.args = f"{message} ({repeated} times in the last {since:.0f}s)", ()
        record.exc_info, record.exc_text = None, None  # the first one had the traceback
        return True
