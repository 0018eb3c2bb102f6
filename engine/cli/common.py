"""What every command shares: the one error type, the exit codes, ``--config`` and running."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from engine.settings import DEFAULT_CONFIG, ConfigError, Settings, load_settings

T = TypeVar("T")

EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3
EXIT_TASK_FAILED = 4
EXIT_INTERRUPTED = 130


class CliError(click.ClickException):
    """One clear line (and a hint), an exit code, no traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR, *, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it per instance

    def show(self, file: Any = None) -> None:
        click.echo(f"erpsync: {self.format_message()}", err=True)
        if self.hint:
            click.echo(f"hint: {self.hint}", err=True)


def config_path_option(help: str, show_default: bool = True) -> Callable[[Any], Any]:
    """``--config PATH`` (default ``$ERPSYNC_CONFIG`` or config/erpsync.toml)."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=lambda: os.environ.get("ERPSYNC_CONFIG", str(DEFAULT_CONFIG)),
        show_default="$ERPSYNC_CONFIG or config/erpsync.toml" if show_default else False,
        help=help,
    )


config_option = config_path_option("TOML configuration file.")


def settings_from(config_path: Path) -> Settings:
    """The validated configuration, or an exit with :data:`EXIT_CONFIG` naming the key."""
    try:
        return load_settings(config_path)
    except ConfigError as exc:
        raise CliError(f"invalid configuration\n{exc}", EXIT_CONFIG) from None


def run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run one coroutine on a fresh event loop."""
    return asyncio.run(factory())
