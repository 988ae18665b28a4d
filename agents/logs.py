"""Settings are secrets: mask them in every log record, whichever handler prints it."""

from __future__ import annotations

import logging
import time
import traceback

import orjson

from agents.log_policy import LogPolicy
from streams.masking import Masker

_MASKER = "leadstreams_masker"  # the record attribute holding the masker of mask_log_records


def mask_log_records(masker: Masker) -> None:
    """Install a record factory whose message and traceback text are masked, so the
    masking holds for Faust's and aiokafka's handlers as well as ours."""
    base = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = base(*args, **kwargs)  # type: ignore[arg-type]
        message = masker.text(record.getMessage())
        record.msg, record.args = message, ()  # already formatted: nothing to interpolate
        if record.exc_info and not record.exc_text:
            record.exc_text = masker.text("".join(traceback.format_exception(*record.exc_info)).rstrip())
        # The `extra` fields (a request's url and body) are set on the record only after this
        # factory returns (Logger.makeRecord), so they are masked when formatted, with this masker.
        record.__dict__[_MASKER] = masker
        return record

    logging.setLogRecordFactory(factory)


# Fields the engine attaches to its request log records (streams.step.partner).
EXTRA_FIELDS = ("flow", "step", "integration", "method", "url", "status", "elapsed_ms", "attempt", "body")


def _extra_fields(record: logging.LogRecord) -> dict[str, object]:
    """The request fields the record has, text masked (an API key in the url's query)."""
    masker: Masker | None = getattr(record, _MASKER, None)
    fields = {name: getattr(record, name) for name in EXTRA_FIELDS if hasattr(record, name)}
    if masker is not None:
        for name, value in fields.items():
            if isinstance(value, str):
                fields[name] = masker.text(value)
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers: time, level, logger, message, and
    the request fields when the record has them."""

    converter = time.gmtime  # the timestamps say Z

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_extra_fields(record))
        if record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def logging_config(fmt: str, level: str, bodies: bool) -> dict[str, object]:
    """A dictConfig for the worker: text or JSON lines on stderr, through the log policy
    (agents.log_policy: libraries' chatter at DEBUG, floods folded); request logs at
    DEBUG (``leadstreams.http``), with bodies only when asked (``leadstreams.http.bodies``)."""
    formatter = (
        {"()": JsonFormatter}
        if fmt == "json"
        else {"format": "[%(asctime)s] %(levelname)s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": formatter},
        "filters": {"policy": {"()": LogPolicy, "level": level.upper()}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "main",
                "filters": ["policy"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {"leadstreams.http.bodies": {"level": "DEBUG" if bodies else "WARNING"}},
    }
