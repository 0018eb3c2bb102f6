"""The log lines' timestamp: structlog's ISO UTC text, formatted once per second."""

from __future__ import annotations

import datetime
import re
import time

import pytest
from structlog.processors import TimeStamper

from engine.observability import logging as log_config

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")


def _ours_at(monkeypatch: pytest.MonkeyPatch, nanoseconds: int) -> str:
    monkeypatch.setattr(time, "time_ns", lambda: nanoseconds)  # the module the logger reads
    stamped: str = log_config.iso_timestamp(None, "info", {})["timestamp"]
    return stamped


@pytest.mark.parametrize(
    "nanoseconds",
    [
        1_796_612_462_123_456_789,  # 2026-12-07T03:01:02.123456789
        1_796_612_462_000_000_000,  # a whole second: no fraction, as isoformat
        1_796_612_462_000_000_999,  # under a microsecond past it: still none
        1_796_612_462_000_001_000,
        1_796_612_463_999_999_999,  # the next second, from the cache's point of view
        0,
    ],
)
def test_the_timestamp_is_structlogs_iso_utc_text(
    monkeypatch: pytest.MonkeyPatch, nanoseconds: int
) -> None:
    ours = _ours_at(monkeypatch, nanoseconds)
    moment = datetime.datetime.fromtimestamp(nanoseconds // 1000 / 1e6, datetime.UTC)
    # What TimeStamper(fmt="iso", utc=True) writes for that moment (microseconds floored).
    expected = moment.replace(microsecond=nanoseconds // 1000 % 1_000_000)
    assert ours == expected.isoformat().replace("+00:00", "Z")
    assert ISO_UTC.match(ours)


def test_the_cached_second_follows_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    first = _ours_at(monkeypatch, 1_796_612_462_500_000_000)
    later = _ours_at(monkeypatch, 1_796_612_522_250_000_000)  # a minute on
    assert first == "2026-12-07T03:01:02.500000Z"
    assert later == "2026-12-07T03:02:02.250000Z"


def test_it_matches_structlogs_stamper_now() -> None:
    theirs = TimeStamper(fmt="iso", utc=True)(None, "info", {})["timestamp"]
    ours = log_config.iso_timestamp(None, "info", {})["timestamp"]
    assert ISO_UTC.match(theirs) and ISO_UTC.match(ours)
    assert ours[:19] == theirs[:19] or ours[:16] == theirs[:16]  # the same second (or next)
