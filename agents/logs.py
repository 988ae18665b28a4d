"""Settings are secrets: mask them in every log record, whichever handler prints it."""

from __future__ import annotations

import logging
import traceback

from streams.masking import Masker


def mask_log_records(masker: Masker) -> None:
    """Install a record factory whose message and traceback text are masked, so the
    masking holds for Faust's and aiokafka's handlers as well as ours."""
    base = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = base(*args, **kwargs)  # type: ignore[arg-type]
        message = masker.text(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info and not record.exc_text:
            record.exc_text = masker.text("".join(traceback.format_exception(*record.exc_info)).rstrip())
        return record

    logging.setLogRecordFactory(factory)
