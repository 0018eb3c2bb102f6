"""JSON log lines: info lines written once per event-loop iteration, in order, none lost."""

from __future__ import annotations

import asyncio
import io
import logging
import sys
from collections.abc import Iterator

import orjson
import pytest
import structlog

from engine.observability import logging as log_config
from engine.settings import LoggingSettings


class Recording(io.BytesIO):
    """A byte stream that keeps each write apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.writes.append(bytes(data))
        return len(data)

    def events(self) -> list[str]:
        lines = b"".join(self.writes).splitlines()
        return [orjson.loads(line)["event"] for line in lines]


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recording]:
    recording = Recording()
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(recording, write_through=True))
    log_config.configure(LoggingSettings(level="info", format="json"))
    yield recording
    log_config.flush_logs()
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


async def test_info_lines_of_one_iteration_go_out_together_at_the_next(
    stream: Recording,
) -> None:
    log = structlog.get_logger("test")
    log.info("first", n=1)
    log.info("second", n=2)
    log.debug("below the level")
    assert stream.writes == []  # nothing yet: the loop has not turned
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(stream.writes) == 1
    assert stream.events() == ["first", "second"]
    line = orjson.loads(stream.writes[0].splitlines()[1])
    assert line["n"] == 2 and line["level"] == "info" and line["logger"] == "test"


async def test_a_warning_is_written_at_once_after_the_buffered_lines(stream: Recording) -> None:
    log = structlog.get_logger("test")
    log.info("queued")
    log.warning("trouble")
    assert stream.events() == ["queued", "trouble"]  # without turning the loop
    log.error("worse")
    assert stream.events() == ["queued", "trouble", "worse"]


async def test_library_records_keep_their_place_among_our_lines(stream: Recording) -> None:
    structlog.get_logger("test").info("ours")
    logging.getLogger("aiohttp.server").warning("theirs")
    assert stream.events() == ["ours", "theirs"]


def test_outside_an_event_loop_every_line_is_written_at_once(stream: Recording) -> None:
    structlog.get_logger("test").info("no loop")
    assert stream.events() == ["no loop"]


async def test_flush_logs_writes_what_is_buffered(stream: Recording) -> None:
    structlog.get_logger("test").info("pending")
    log_config.flush_logs()  # as at exit, or in a forked server process before os._exit
    assert stream.events() == ["pending"]
    await asyncio.sleep(0)
    assert stream.events() == ["pending"]  # written once
