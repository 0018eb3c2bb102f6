"""``erpsync dlq``: list and replay dead-lettered messages."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiormq
import click
import orjson

from engine.cli.common import (
    EXIT_UNAVAILABLE,
    CliError,
    config_option,
    run,
    settings_from,
)

T = TypeVar("T")


@click.group()
def dlq() -> None:
    """Dead-lettered messages (invalid, or over the delivery limit)."""
    # The clients' own connection-error logs would repeat our one-line errors.
    for name in ("aiormq", "aio_pika"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


@dlq.command("list")
@config_option
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def dlq_list(config_path: Path, limit: int, as_json: bool) -> None:
    """Show dead letters, oldest first, without removing them."""
    from engine.messaging.dead_letters import list_dead_letters

    settings = settings_from(config_path)
    _check_broker(config_path)
    letters, total = _guard(lambda: list_dead_letters(settings.broker, limit))
    if as_json:
        for letter in letters:
            click.echo(orjson.dumps(letter.as_dict()).decode())
        return
    if not letters:
        click.echo(f"no dead letters in {settings.broker.prefix}.dead-letters")
        return
    rows = [
        (letter.id, letter.routing_key, letter.time or "-", _shorten(letter.reason, 70))
        for letter in letters
    ]
    header = ("MESSAGE ID", "ROUTING KEY", "DEAD-LETTERED", "REASON")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        click.echo(
            "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True))
            + "  "
            + row[3]
        )
    shown = f"{len(letters)} of {total}" if total > len(letters) else str(total)
    click.echo(f"\n{shown} dead letters; replay with: erpsync dlq replay --id ID (or --all)")


@dlq.command("replay")
@config_option
@click.option("--id", "ids", multiple=True, help="Message id from `dlq list` (repeatable).")
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
def dlq_replay(config_path: Path, ids: tuple[str, ...], replay_all: bool) -> None:
    """Republish dead letters to the work exchange (confirmed), then remove them."""
    from engine.messaging.dead_letters import replay

    if bool(ids) == replay_all:
        raise CliError("give --id ID (one or more) or --all\nhint: erpsync dlq list shows the ids")
    settings = settings_from(config_path)
    _check_broker(config_path)
    report = _guard(lambda: replay(settings.broker, None if replay_all else set(ids)))
    for message_id in report.replayed:
        click.echo(f"replayed {message_id}")
    for message_id in report.not_found:
        click.echo(f"not found {message_id}", err=True)
    if report.failed:
        message_id, reason = report.failed[0]
        raise CliError(
            f"replay of {message_id} failed: {reason}; it and the rest stay in the dead-letter "
            f"queue ({len(report.replayed)} replayed)"
        )
    click.echo(f"{len(report.replayed)} replayed")
    if report.not_found:
        raise CliError(f"{len(report.not_found)} ids not found in the dead-letter queue")


def _check_broker(config_path: Path) -> None:
    from engine.runtime.preflight import ServiceUnavailable, check_broker

    try:
        run(lambda: check_broker(settings_from(config_path)))
    except ServiceUnavailable as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None


def _guard(call: Callable[[], Coroutine[Any, Any, T]]) -> T:
    from engine.messaging.dead_letters import DeadLetterError

    try:
        return run(call)
    except DeadLetterError as exc:
        raise CliError(str(exc)) from None
    except (OSError, TimeoutError, aiormq.exceptions.AMQPError) as exc:
        raise CliError(
            f"the broker failed during the operation ({type(exc).__name__}: {exc})\n"
            "hint: nothing was removed that was not republished; run the command again",
            EXIT_UNAVAILABLE,
        ) from None


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
