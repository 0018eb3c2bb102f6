"""``logging.levels``: a logger's own level, by dotted name, over ``logging.level``."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest
import structlog
from pydantic import ValidationError

from engine.observability.logging import LoggerLevels
from engine.settings import ConfigError, LoggingSettings, load_settings


class Named:
    def __init__(self, name: str | None) -> None:
        self.name = name


def passes(levels: LoggerLevels, logger: str | None, method: str) -> bool:
    try:
        levels(Named(logger), method, {})
    except structlog.DropEvent:
        return False
    return True


def test_the_longest_dotted_name_decides() -> None:
    levels = LoggerLevels(
        logging.INFO, {"engine": logging.ERROR, "engine.sync": logging.DEBUG, "x.y": 30}
    )
    assert not passes(levels, "engine.api.routes", "warning")  # engine: error
    assert passes(levels, "engine.api.routes", "error")
    assert passes(levels, "engine.sync.incremental", "debug")  # engine.sync: debug
    assert passes(levels, "engine.sync", "debug")
    assert not passes(levels, "engine.syncx", "warning")  # not a child of engine.sync
    assert passes(levels, "x", "info")  # x alone is not x.y: the default, info
    assert not passes(levels, None, "debug")  # no name: the default
    assert passes(levels, None, "info")


def test_bad_logger_names_are_refused() -> None:
    for name in ("", "engine..api", ".engine", "engine."):
        with pytest.raises(ValidationError, match="not a dotted logger name"):
            LoggingSettings(levels={name: "info"})
    with pytest.raises(ValidationError):
        LoggingSettings(levels={"engine": "verbose"})


SCRIPT = textwrap.dedent(
    """
    import logging, sys
    import structlog
    from engine.observability.logging import configure
    from engine.settings import ConfigError, LoggingSettings, load_settings

    configure(LoggingSettings(format=sys.argv[1], level="info", levels={
        "engine.api.routes": "warning", "engine.sync": "debug", "aiormq": "info"}))
    structlog.get_logger("engine.api.routes").info("dropped: routes at warning")
    structlog.get_logger("engine.api.routes").warning("kept: routes warning")
    structlog.get_logger("engine.api.other").info("kept: default info")
    structlog.get_logger("engine.api.other").debug("dropped: default info")
    structlog.get_logger("engine.sync.incremental").debug("kept: sync at debug")
    logging.getLogger("engine.sync.x").debug("kept: stdlib sync at debug")
    logging.getLogger("engine.api.routes").info("dropped: stdlib routes at warning")
    logging.getLogger("aiormq.connection").info("kept: aiormq raised to info")
    configure(LoggingSettings(format=sys.argv[1], level="info"))
    structlog.get_logger("engine.api.routes").info("kept: levels gone again")
    logging.getLogger("engine.sync.x").debug("dropped: levels gone again")
    """
)


@pytest.mark.parametrize("format", ["json", "console"])
def test_levels_apply_to_structlog_and_stdlib_lines(format: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, format], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    if format == "json":
        events = [orjson.loads(line)["event"] for line in lines]
    else:
        events = [e for line in lines for e in [line] if "kept:" in line or "dropped:" in line]
    kept = [e for e in events if "kept:" in e]
    assert not [e for e in events if "dropped:" in e], events
    assert len(kept) == 6, events


def test_levels_from_the_environment() -> None:
    config = Path(__file__).parents[2] / "config" / "erpsync.toml"
    env = {"ERPSYNC_LOGGING__LEVELS": "engine.api.routes=WARNING, engine.sync=debug"}
    settings = load_settings(config, env=env)
    assert settings.logging.levels == {"engine.api.routes": "warning", "engine.sync": "debug"}
    with pytest.raises(ConfigError) as refused:
        load_settings(config, env={"ERPSYNC_LOGGING__LEVELS": "engine.sync"})
    message = str(refused.value)  # names the file, the key, the variable and what is wrong
    assert str(config) in message and "logging.levels (from ERPSYNC_LOGGING__LEVELS)" in message
    assert "'engine.sync' is not name=level" in message
