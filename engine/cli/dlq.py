"""``erpsync dlq``: list, replay and discard dead-lettered messages.

It needs only the broker: from ``--broker-url``, else the configuration file when there is one,
else the ``ERPSYNC_BROKER_*`` environment and the defaults, so it also works outside a checkout.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import aiormq
import click
import orjson
from pydantic import SecretStr, ValidationError

from engine.cli.common import (
    EXIT_CONFIG,
    EXIT_UNAVAILABLE,
    CliError,
    config_path_option,
    run,
    settings_from,
)
from engine.settings import BrokerSettings, environment_section, redact_url

T = TypeVar("T")


@click.group()
def dlq() -> None:
    """Dead-lettered messages (invalid, or over the delivery limit)."""
    # The clients' own connection-error logs would repeat our one-line errors.
    for name in ("aiormq", "aio_pika"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def broker_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--config`` (used when it exists) and ``--broker-url``."""
    func = click.option(
        "--broker-url",
        help="RabbitMQ URL; wins over the configuration [$ERPSYNC_BROKER_URL, else the "
        "configuration's broker.url, else amqp://guest:guest@127.0.0.1:5672/]. Prefer the "
        "environment variable: a command line is visible to other users.",
    )(func)
    with_config: Callable[..., Any] = config_path_option(
        "Configuration file, read for [broker] when it exists.", show_default=True
    )(func)
    return with_config


def _broker(config_path: Path, broker_url: str | None) -> BrokerSettings:
    """The broker settings, and (on stderr) where they came from when there was no file."""
    named = (
        "ERPSYNC_CONFIG" in os.environ
        or click.get_current_context().get_parameter_source("config_path")
        is click.core.ParameterSource.COMMANDLINE
    )
    if config_path.exists() or named:
        broker = settings_from(config_path).broker  # a named file that is missing is an error
    else:
        try:
            broker = BrokerSettings.model_validate(environment_section("broker"))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            raise CliError(
                f"ERPSYNC_BROKER_{str(first['loc'][0]).upper()}: {first['msg']}", EXIT_CONFIG
            ) from None
    if broker_url:
        broker = broker.model_copy(update={"url": SecretStr(broker_url)})
    if not config_path.exists():
        source = (
            "--broker-url"
            if broker_url
            else ("ERPSYNC_BROKER_URL" if "url" in environment_section("broker") else "the default")
        )
        click.echo(
            f"erpsync: no configuration file {config_path} (--config, $ERPSYNC_CONFIG); "
            f"broker {redact_url(broker.url.get_secret_value())} from {source}, "
            f"prefix {broker.prefix!r}",
            err=True,
        )
    return broker


@dlq.command("list")
@broker_options
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def dlq_list(config_path: Path, broker_url: str | None, limit: int, as_json: bool) -> None:
    """Show dead letters, oldest first, without removing them."""
    from engine.messaging.dead_letters import list_dead_letters

    broker = _broker(config_path, broker_url)
    _check_broker(broker)
    letters, total = _guard(lambda: list_dead_letters(broker, limit))
    if as_json:
        for letter in letters:
            click.echo(orjson.dumps(letter.as_dict()).decode())
        return
    if not letters:
        click.echo(f"no dead letters in {broker.prefix}.dead-letters")
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
    click.echo(
        f"\n{shown} dead letters; replay with: erpsync dlq replay --id ID (or --all); "
        "remove with: erpsync dlq discard --id ID (or --all)"
    )


@dlq.command("replay")
@broker_options
@click.option("--id", "ids", multiple=True, help="Message id from `dlq list` (repeatable).")
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
def dlq_replay(
    config_path: Path, broker_url: str | None, ids: tuple[str, ...], replay_all: bool
) -> None:
    """Republish dead letters to the work exchange (confirmed), then remove them."""
    from engine.messaging.dead_letters import replay

    _need_ids(ids, replay_all)
    broker = _broker(config_path, broker_url)
    _check_broker(broker)
    report = _guard(lambda: replay(broker, None if replay_all else set(ids)))
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


@dlq.command("discard")
@broker_options
@click.option("--id", "ids", multiple=True, help="Message id from `dlq list` (repeatable).")
@click.option("--all", "discard_all", is_flag=True, help="Discard every dead letter.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def dlq_discard(
    config_path: Path, broker_url: str | None, ids: tuple[str, ...], discard_all: bool, yes: bool
) -> None:
    """Remove dead letters for good (a poison message that replaying would only dead-letter
    again). Keep a copy first if you need one: `erpsync dlq list --json`."""
    from engine.messaging.dead_letters import discard

    _need_ids(ids, discard_all)
    broker = _broker(config_path, broker_url)
    _check_broker(broker)
    what = "every dead letter" if discard_all else ", ".join(ids)
    if not yes:
        prompt = f"Discard {what} from {broker.prefix}.dead-letters? This cannot be undone"
        try:
            confirmed = click.confirm(prompt, err=True)
        except click.Abort:  # end of input: no answer
            confirmed = False
        if not confirmed:
            raise CliError("not confirmed; nothing discarded", hint="pass --yes in scripts")
    report = _guard(lambda: discard(broker, None if discard_all else set(ids)))
    for message_id in report.discarded:
        click.echo(f"discarded {message_id}")
    for message_id in report.not_found:
        click.echo(f"not found {message_id}", err=True)
    click.echo(f"{len(report.discarded)} discarded")
    if report.not_found:
        raise CliError(f"{len(report.not_found)} ids not found in the dead-letter queue")


def _need_ids(ids: tuple[str, ...], every: bool) -> None:
    if bool(ids) == every:
        raise CliError("give --id ID (one or more) or --all", hint="erpsync dlq list shows the ids")


def _check_broker(broker: BrokerSettings) -> None:
    async def connect() -> None:
        async with asyncio.timeout(broker.connect_timeout + 1):
            connection = await aio_pika.connect(
                broker.url.get_secret_value(), timeout=broker.connect_timeout
            )
        await connection.close()

    try:
        run(connect)
    except Exception as exc:
        raise CliError(
            f"RabbitMQ is not reachable at {redact_url(broker.url.get_secret_value())} "
            f"({type(exc).__name__})",
            EXIT_UNAVAILABLE,
            hint="start it, or point --broker-url / ERPSYNC_BROKER_URL (or --config) at it",
        ) from None


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
