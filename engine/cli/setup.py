"""``erpsync migrate``, ``check-config`` and ``hash-password``: setting a deployment up."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

import click

from engine.cli.common import EXIT_UNAVAILABLE, CliError, config_option, run, settings_from


@click.command()
@config_option
def migrate(config_path: Path) -> None:
    """Create the database if needed and apply pending migrations."""
    from engine.runtime.preflight import ServiceUnavailable, run_migrations

    settings = settings_from(config_path)
    try:
        applied = run(lambda: run_migrations(settings))
    except ServiceUnavailable as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    if applied:
        for migration in applied:
            click.echo(f"applied {migration.version:04d}_{migration.name}")
    else:
        click.echo("database schema is up to date")


@click.command("hash-password")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def hash_password(password_stdin: bool) -> None:
    """Print a password hash for [[auth.users]] password_hash."""
    from engine.api.passwords import hash_password

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise CliError("passwords differ")
    if not password:
        raise CliError("empty password")
    click.echo(hash_password(password))


@click.command("check-config")
@config_option
def check_config(config_path: Path) -> None:
    """Validate the configuration file and exit."""
    settings = settings_from(config_path)
    click.echo(
        f"{config_path}: ok ({len(settings.connections)} ERP connections, "
        f"{len(settings.auth.users)} users)"
    )
