"""``python -m engine.devservices up|down|status|packages``: services for `make run`/`make test`.

``up``, ``down`` and ``status`` are ``erpsync services`` (:mod:`engine.cli.services`); ``packages``
installs the system packages a make target needs.
"""

from __future__ import annotations

import click

from engine.cli.common import CliError
from engine.cli.services import services
from engine.devservices import packages


@click.group(commands=services.commands)
def main() -> None:
    """Private PostgreSQL and RabbitMQ for development and tests (docs/operations.md)."""


@main.command("packages")
@click.argument("purpose", type=click.Choice(sorted(packages.SETS)))
def packages_command(purpose: str) -> None:
    """Install the system packages `make PURPOSE` needs (as root), or say how."""
    try:
        packages.ensure(packages.SETS[purpose], lambda line: click.echo(f"packages: {line}"))
    except packages.MissingPackages as exc:
        raise CliError(str(exc)) from None


if __name__ == "__main__":
    main()
