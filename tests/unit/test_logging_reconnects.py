"""aio-pika's error lines for a handled reconnect come out as warnings; other errors stay."""

from __future__ import annotations

import logging

from engine.observability.logging import HandledReconnects


def record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("aio_pika.tools", logging.ERROR, __file__, 1, msg, args, None)


def test_a_channel_close_callback_error_is_a_warning() -> None:
    line = record(
        "Callback %r error: %s: %s",
        "<bound method RobustChannel._on_close of <RobustChannel 1>>",
        "RuntimeError",
        "connection closed",
    )
    assert HandledReconnects().filter(line)
    assert (line.levelno, line.levelname) == (logging.WARNING, "WARNING")


def test_other_callback_errors_stay_errors() -> None:
    line = record("Callback %r error: %s: %s", "<function on_message>", "KeyError", "x")
    assert HandledReconnects().filter(line)
    assert line.levelno == logging.ERROR
