"""``erpsync demo``: the demo data in the local PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli.common import EXIT_UNAVAILABLE, CliError, config_option, run, settings_from


@click.group()
def demo() -> None:
    """Demo data in the local PostgreSQL."""


@demo.command("seed")
@config_option
@click.option("--reset", is_flag=True, help="Drop the demo data (and all keys/tasks) first.")
def demo_seed(config_path: Path, reset: bool) -> None:
    """Create and fill the demo CRM and ERP schemas when empty (idempotent)."""
    from engine.runtime.preflight import ServiceUnavailable, seed_demo

    settings = settings_from(config_path)
    try:
        report = run(lambda: seed_demo(settings, reset=reset))
    except ServiceUnavailable as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    except RuntimeError as exc:
        raise CliError(str(exc)) from None
    verb = "seeded" if report.created else "already present"
    click.echo(
        f"demo data {verb}: {report.companies} companies, {report.persons} persons, "
        f"{report.internal_keys} internal keys, {report.links} links"
    )
