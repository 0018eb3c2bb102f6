"""``python -m engine.devservices up|down|status|packages``: services for `make run`/`make test`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from engine.devservices import packages
from engine.devservices.services import DevServices, broker_endpoint, database_endpoint
from engine.settings import ConfigError, load_settings

_config = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Configuration whose database.url and broker.url (with ERPSYNC_* overrides) to serve "
    "[default: $ERPSYNC_CONFIG or config/erpsync.toml].",
)
_run_dir = click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".run"),
    show_default=True,
    help="Folder of the private services' data (git-ignored).",
)


def _say(line: str) -> None:
    click.echo(f"services: {line}")


@click.group()
def main() -> None:
    """Private PostgreSQL and RabbitMQ for development and tests (docs/operations.md)."""


@main.command()
@_config
@_run_dir
@click.option("--database-url", help="Use this URL instead of the configuration's.")
@click.option("--broker-url", help="Use this URL instead of the configuration's.")
def up(config_path: Path, run_dir: Path, database_url: str | None, broker_url: str | None) -> None:
    """Use the configured services if they answer; otherwise start private ones."""
    if database_url is None or broker_url is None:
        try:
            settings = load_settings(
                config_path or os.environ.get("ERPSYNC_CONFIG", "config/erpsync.toml")
            )
        except ConfigError as exc:
            click.echo(str(exc), err=True)
            sys.exit(2)
        database_url = database_url or settings.database.url.get_secret_value()
        broker_url = broker_url or settings.broker.url.get_secret_value()
    services = DevServices(run_dir, _say)
    try:
        services.postgres_up(database_endpoint(database_url))
        services.rabbitmq_up(broker_endpoint(broker_url))
    except packages.MissingPackages as exc:
        click.echo(f"services: {exc}", err=True)
        sys.exit(1)


@main.command()
@_config
@_run_dir
def down(config_path: Path | None, run_dir: Path) -> None:
    """Stop the private services (their data stays for the next run); --config is ignored."""
    DevServices(run_dir, _say).down()


@main.command()
@_config
@_run_dir
def status(config_path: Path | None, run_dir: Path) -> None:
    """The private services and whether they run; --config is ignored."""
    lines = DevServices(run_dir, _say).status()
    click.echo("\n".join(lines) if lines else f"no private services in {run_dir}")


@main.command("packages")
@click.argument("purpose", type=click.Choice(sorted(packages.SETS)))
def packages_command(purpose: str) -> None:
    """Install the system packages `make PURPOSE` needs (as root), or say how."""
    try:
        packages.ensure(packages.SETS[purpose], lambda line: click.echo(f"packages: {line}"))
    except packages.MissingPackages as exc:
        click.echo(f"packages: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
