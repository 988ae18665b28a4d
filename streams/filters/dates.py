"""Date filters: reformat a date and compute an age.

Formats are written with human tokens (``YYYY`` ``YY`` ``MM`` ``M`` ``DD`` ``D`` ``HH``
``mm`` ``ss``, e.g. ``MM/DD/YYYY``; the letters Y M D H m s always belong to a token,
other characters are literal) or as strftime when they contain ``%``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

from streams.filters._base import blank_is_none

# token -> (strptime directive, how to write it)
_TOKENS: dict[str, tuple[str, Callable[[datetime], str]]] = {
    "YYYY": ("%Y", lambda d: f"{d.year:04d}"),
    "YY": ("%y", lambda d: f"{d.year % 100:02d}"),
    "MM": ("%m", lambda d: f"{d.month:02d}"),
    "M": ("%m", lambda d: str(d.month)),  # strptime's %m also reads an unpadded month
    "DD": ("%d", lambda d: f"{d.day:02d}"),
    "D": ("%d", lambda d: str(d.day)),
    "HH": ("%H", lambda d: f"{d.hour:02d}"),
    "mm": ("%M", lambda d: f"{d.minute:02d}"),
    "ss": ("%S", lambda d: f"{d.second:02d}"),
}
# A run of one token letter is a single token, so "MMM" is refused rather than read as "MM" + "M".
_TOKEN_RUN = re.compile(r"([YMDHms])\1*")

Part = str | Callable[[datetime], str]


@cache
def _parse_format(fmt: str, filter_name: str) -> tuple[Part, ...]:
    """Split a human-token format into literal text and token writers."""
    parts: list[Part] = []
    position = 0
    for run in _TOKEN_RUN.finditer(fmt):
        token = run.group()
        if token not in _TOKENS:
            raise ValueError(
                f"{filter_name}: unsupported token {token!r} in format {fmt!r}; "
                f"use {', '.join(_TOKENS)} or a strftime format with %"
            )
        parts += [fmt[position : run.start()], _TOKENS[token][1]]
        position = run.end()
    if not any(callable(part) for part in parts):
        raise ValueError(f"{filter_name}: format {fmt!r} has no date tokens (e.g. MM/DD/YYYY or %m/%d/%Y)")
    parts.append(fmt[position:])
    return tuple(part for part in parts if part)


def _strptime_pattern(fmt: str, filter_name: str) -> str:
    """A strptime pattern for a human-token or strftime format."""
    if "%" in fmt:
        return fmt
    _parse_format(fmt, filter_name)  # validates the tokens
    return _TOKEN_RUN.sub(lambda run: _TOKENS[run.group()][0], fmt)


def to_datetime(value: Any, input_format: str | None, filter_name: str) -> datetime:
    """A date/datetime as is (a date at midnight); a string parsed as ISO-8601, or
    with ``input_format`` when given. Raises ValueError naming the filter and the value."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    text = str(value).strip()
    try:
        if input_format is None:
            return datetime.fromisoformat(text)
        return datetime.strptime(text, _strptime_pattern(input_format, filter_name))
    except ValueError:
        expected = "an ISO-8601 date (or pass input_format)" if input_format is None else input_format
        raise ValueError(f"{filter_name}: cannot parse {text!r} as {expected}") from None


@blank_is_none
def date_filter(value: Any, format: str, input_format: str | None = None) -> str:
    """Reformat a date: ``lead.dob | date('MM/DD/YYYY')`` turns ``1990-03-07`` into ``03/07/1990``.

    The input is a date/datetime, an ISO-8601 string, or a string in ``input_format``
    (``lead.dob | date('YYYY-MM-DD', 'MM/DD/YYYY')``). Both formats take human tokens
    (``YYYY YY MM M DD D HH mm ss``) or strftime (``%d %b %Y``). None/missing/"" gives None;
    an unparseable value raises ``date: cannot parse '31/31/2020' as MM/DD/YYYY``."""
    parts = None if "%" in format else _parse_format(format, "date")  # a bad format fails first
    moment = to_datetime(value, input_format, "date")
    if parts is None:
        return moment.strftime(format)
    return "".join(part if isinstance(part, str) else part(moment) for part in parts)


@blank_is_none
def age(value: Any, today: Any = None, input_format: str | None = None) -> int:
    """Whole years since a birth date: ``lead.dob | age``.

    The birth date follows the input rules of ``date`` (``input_format`` included);
    ``today`` (a date or an ISO-8601 string) defaults to today in UTC. Someone born on 29 February turns
    a year older on 1 March in non-leap years. None/missing/"" gives None; an
    unparseable value or a birth date after today raises ValueError."""
    born = to_datetime(value, input_format, "age").date()
    on = datetime.now(UTC).date() if today is None else to_datetime(today, None, "age").date()
    if born > on:
        raise ValueError(f"age: birth date {born.isoformat()} is after today ({on.isoformat()})")
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))
