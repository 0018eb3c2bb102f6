"""Arithmetic on a connector's ``last_modified`` positions, where it means something.

Positions are opaque text ordered by the connector. Only two shapes read as times, and only
they get an overlap (the continuous sync's re-read of the last seconds before the watermark):

* an ISO 8601 date and time (``T`` or a space between them, optional fraction of up to 9
  digits, optional ``Z`` or ``+hh[:mm]`` offset; no offset is read as UTC);
* a whole number of epoch seconds, milliseconds or microseconds, told apart by magnitude as
  the ``most_recent`` conflict rule does (above 1e14: microseconds, above 1e11: milliseconds,
  above 1e8: seconds); smaller numbers are counters.

Anything else (a counter, a version string, a date alone) is not a time: no overlap.
An earlier position is written in the original's own shape (separator, fraction digits,
offset, zero padding), so a connector that compares positions as text still can.
"""

from __future__ import annotations

import datetime as dt
import math
import re

_ISO = re.compile(
    r"(\d{4}-\d{2}-\d{2})([T ])(\d{2}:\d{2}:\d{2})(?:[.,](\d{1,9}))?"
    r"(Z|z|[+-]\d{2}(?::?\d{2})?)?"
)
_NUMBER = re.compile(r"\d{1,20}")
_EPOCH = dt.datetime(1970, 1, 1)
_NS = 10**9


def _unit(number: int) -> int | None:
    """Units per second of an epoch number, by magnitude; None for a counter."""
    if number > 10**14:
        return 10**6
    if number > 10**11:
        return 10**3
    return 1 if number > 10**8 else None


def _offset_seconds(suffix: str | None) -> int:
    if not suffix or suffix in "Zz":
        return 0
    sign = -1 if suffix[0] == "-" else 1
    digits = suffix[1:].replace(":", "")
    return sign * (int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60)


def instant(position: str | None) -> int | None:
    """A position as nanoseconds since the epoch (exact, for ordering), or None when it does
    not read as a time."""
    if not position:
        return None
    if _NUMBER.fullmatch(position):
        number = int(position)
        unit = _unit(number)
        return None if unit is None else number * (_NS // unit)
    match = _ISO.fullmatch(position)
    if match is None:
        return None
    date, _, time, fraction, suffix = match.groups()
    try:
        wall = dt.datetime.fromisoformat(f"{date}T{time}")
    except ValueError:
        return None
    seconds = (wall - _EPOCH) // dt.timedelta(seconds=1) - _offset_seconds(suffix)
    frac = int(fraction.ljust(9, "0")) if fraction else 0
    return seconds * _NS + frac


def earlier(position: str | None, seconds: float) -> str | None:
    """The position ``seconds`` before ``position``, in its shape (rounded down to its
    precision: earlier is the safe side); None when it does not read as a time."""
    if not position:
        return None
    if _NUMBER.fullmatch(position):
        number = int(position)
        unit = _unit(number)
        if unit is None:
            return None
        return str(max(0, number - math.ceil(seconds * unit))).zfill(len(position))
    match = _ISO.fullmatch(position)
    if match is None:
        return None
    date, sep, time, fraction, suffix = match.groups()
    try:
        wall = dt.datetime.fromisoformat(f"{date}T{time}")
    except ValueError:
        return None
    digits = len(fraction or "")
    units = 10**digits
    value = ((wall - _EPOCH) // dt.timedelta(seconds=1)) * units + int(fraction or 0)
    whole, rest = divmod(value - math.ceil(seconds * units), units)
    moved = _EPOCH + dt.timedelta(seconds=whole)
    text = moved.strftime(f"%Y-%m-%d{sep}%H:%M:%S")
    if digits:
        text += f"{position[len(date) + 1 + len(time)]}{rest:0{digits}d}"
    return text + (suffix or "")
