"""structlog configuration: once per process, console on a TTY, JSON otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson
import structlog

from engine.settings import LoggingSettings

_NAMED: set[str] = set()
"""The loggers the last :func:`configure` gave a level of their own (``logging.levels``)."""


def configure(settings: LoggingSettings) -> None:
    """Route structlog and stdlib logging through one pipeline writing to stderr."""
    level = getattr(logging, settings.level.upper())
    named = {name: getattr(logging, value.upper()) for name, value in settings.levels.items()}
    # The bound loggers' own filter lets through what any logger may log; LoggerLevels (JSON)
    # or the standard library's per-logger levels (console) then decide by the logger's name.
    lowest = min([level, *named.values()])
    as_json = settings.format == "json" or (settings.format == "auto" and not sys.stderr.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        iso_timestamp,
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.types.Processor
    if as_json:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
        # Our own lines skip the standard library: a level check that is a no-op below the
        # level, then the processors, orjson and one write. Through logging (a LogRecord, a
        # copy of it for ProcessorFormatter, findCaller's frame walk) a line cost 40-80 us,
        # which was the front door's largest cost per request at the default level
        # (docs/benchmarks.md, "Front door at the default log level"). Libraries' records
        # still go through the handler below, to the same stream, each line flushed.
        stream = sys.stderr.buffer

        def factory(*args: object) -> structlog.BytesLogger:
            return structlog.BytesLogger(stream, name=str(args[0]) if args else None)

        structlog.configure(
            processors=[
                *([LoggerLevels(level, named)] if named else []),
                *shared,
                structlog.processors.JSONRenderer(serializer=_dump_bytes),
            ],
            logger_factory=factory,
            wrapper_class=structlog.make_filtering_bound_logger(lowest),
            cache_logger_on_first_use=True,
        )
    else:
        renderer = structlog.dev.ConsoleRenderer()
        structlog.configure(
            processors=[
                structlog.stdlib.filter_by_level,
                *shared,
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            cache_logger_on_first_use=True,
        )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log duplicates our request logging; aiormq is chatty on reconnects.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiormq").setLevel(max(level, logging.WARNING))
    logging.getLogger("aio_pika").setLevel(max(level, logging.WARNING))
    tools = logging.getLogger("aio_pika.tools")
    if not any(isinstance(f, HandledReconnects) for f in tools.filters):
        tools.addFilter(HandledReconnects())
    for name in _NAMED - named.keys():  # set by an earlier configure, not by this one
        logging.getLogger(name).setLevel(logging.NOTSET)
    for name, value in named.items():  # last: an operator's choice beats the defaults above
        logging.getLogger(name).setLevel(value)
    _NAMED.clear()
    _NAMED.update(named)


_METHOD_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


class LoggerLevels:
    """Drops a structlog line below its logger's level (``logging.levels``: the longest dotted
    name that is the logger's or a parent's; else ``logging.level``). Only installed when some
    logger has a level of its own, so the default pipeline pays nothing for it."""

    def __init__(self, default: int, named: dict[str, int]) -> None:
        self._default = default
        self._named = named
        self._by_logger: dict[str | None, int] = {}

    def level_of(self, name: str | None) -> int:
        found = self._by_logger.get(name)
        if found is None:
            found = self._default
            if name is not None:
                parts = name.split(".")
                for end in range(len(parts), 0, -1):
                    value = self._named.get(".".join(parts[:end]))
                    if value is not None:
                        found = value
                        break
            self._by_logger[name] = found
        return found

    def __call__(self, logger: Any, method_name: str, event_dict: Any) -> Any:
        if _METHOD_LEVELS.get(method_name, logging.INFO) < self.level_of(
            getattr(logger, "name", None)
        ):
            raise structlog.DropEvent
        return event_dict


class HandledReconnects(logging.Filter):
    """aio-pika logs a channel's close callback failing while the broker connection is lost
    ("Callback … RobustChannel._on_close … RuntimeError") at error level, dozens per broker
    restart. The consumer's supervisor handles the reconnect, so nobody should be paged: such a
    line is logged as a warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.levelno >= logging.ERROR
            and str(record.msg).startswith("Callback %r error")
            and record.args
            and "_on_close" in repr(record.args)
        ):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_second: tuple[int, str] = (-1, "")
"""The last whole second :func:`iso_timestamp` formatted, and its text."""


def iso_timestamp(logger: Any, method_name: str, event_dict: Any) -> Any:
    """structlog's ``TimeStamper(fmt="iso", utc=True)``, the same text
    (``2026-12-07T05:01:02.123456Z``, no fraction at a whole second, as ``isoformat``), in a
    fifth of the time: the date and time of day are formatted once per second (every request
    of a busy front door logs a line)."""
    global _second
    second, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
    if _second[0] != second:
        _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    micro = nanoseconds // 1000
    event_dict["timestamp"] = f"{_second[1]}.{micro:06d}Z" if micro else f"{_second[1]}Z"
    return event_dict


def _dumps(obj: object, default: object = None) -> str:
    return orjson.dumps(obj, default=str).decode()


def _dump_bytes(obj: object, default: object = None) -> bytes:
    return orjson.dumps(obj, default=str)
