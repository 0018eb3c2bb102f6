"""``erpsync services up|down|status``: private PostgreSQL and RabbitMQ for development and tests,
over :mod:`engine.devservices` (``python -m engine.devservices`` runs the same commands)."""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli.common import CliError, config_option, settings_from

run_dir_option = click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".run"),
    show_default=True,
    help="Folder of the private services' data (git-ignored).",
)


def _say(line: str) -> None:
    click.echo(f"services: {line}")


@click.group()
def services() -> None:
    """Private PostgreSQL and RabbitMQ for development and tests (docs/operations.md)."""


@services.command()
@config_option
@run_dir_option
@click.option("--database-url", help="Use this URL instead of the configuration's.")
@click.option("--broker-url", help="Use this URL instead of the configuration's.")
def up(config_path: Path, run_dir: Path, database_url: str | None, broker_url: str | None) -> None:
    """Use the configured services if they answer; otherwise start private ones."""
    from engine.devservices import packages
    from engine.devservices.services import DevServices, broker_endpoint, database_endpoint

    if database_url is None or broker_url is None:
        settings = settings_from(config_path)
        database_url = database_url or settings.database.url.get_secret_value()
        broker_url = broker_url or settings.broker.url.get_secret_value()
    dev = DevServices(run_dir, _say)
    try:
        dev.postgres_up(database_endpoint(database_url))
        dev.rabbitmq_up(broker_endpoint(broker_url))
    except packages.MissingPackages as exc:
        raise CliError(str(exc)) from None


@services.command()
@config_option
@run_dir_option
def down(config_path: Path, run_dir: Path) -> None:
    """Stop the private services (their data stays for the next run); --config is ignored."""
    from engine.devservices.services import DevServices

    DevServices(run_dir, _say).down()


@services.command()
@config_option
@run_dir_option
def status(config_path: Path, run_dir: Path) -> None:
    """The private services and whether they run; --config is ignored."""
    from engine.devservices.services import DevServices

    lines = DevServices(run_dir, _say).status()
    click.echo("\n".join(lines) if lines else f"no private services in {run_dir}")
