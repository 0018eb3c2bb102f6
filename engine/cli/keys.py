"""``erpsync keys``: import and export the key registry as SuperOffice table exports.

Reading, checking and planning are :mod:`engine.keyregistry`'s; this module is the command line
over it: arguments, one database connection, what is printed and the exit code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from engine.cli.common import EXIT_UNAVAILABLE, CliError, config_option, run, settings_from
from engine.settings import Settings

if TYPE_CHECKING:
    import asyncpg

T = TypeVar("T")
MAX_SHOWN = 50
"""Problems printed before the rest are counted."""


@click.group()
def keys() -> None:
    """The internal/external key registry (SuperOffice ErpInternalKey/ErpExternalKey)."""


def _renumbering(pairs: tuple[str, ...]) -> dict[int, int]:
    mapping: dict[int, int] = {}
    for pair in pairs:
        left, sep, right = pair.partition("=")
        if not sep or not left.strip().isdigit() or not right.strip().isdigit():
            raise click.BadParameter(f"{pair!r}: expected SUPEROFFICE_ID=ERPSYNC_ID")
        mapping[int(left)] = int(right)
    return mapping


def _with_database(settings: Settings, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run ``work`` on one connection to the configured database (exit 3 when unreachable)."""
    from engine.runtime.preflight import ServiceUnavailable, connect_database

    async def session() -> T:
        conn = await connect_database(settings)
        try:
            return await work(conn)
        finally:
            await conn.close()

    try:
        return run(session)
    except ServiceUnavailable as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None


@keys.command("import")
@config_option
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@click.option(
    "--map-connection",
    "renumber",
    multiple=True,
    metavar="SO_ID=ID",
    help="Import SuperOffice's ErpConnection SO_ID as erpsync's connection ID (repeatable).",
)
def import_keys(
    config_path: Path, directory: Path, dry_run: bool, renumber: tuple[str, ...]
) -> None:
    """Import ErpConnection, ErpInternalKey and ErpExternalKey exports (.csv or .json)
    from DIRECTORY, keeping their ids: all rows in one transaction, or none."""
    from engine.keyregistry import exports
    from engine.keyregistry.plan import apply, parse

    settings = settings_from(config_path)
    try:
        files = exports.find(directory)
        tables = {table: exports.read(table, path) for table, path in files.items()}
    except exports.ExportError as exc:
        raise CliError(str(exc)) from None
    configured = [c.id for c in settings.connections]
    parsed = parse(tables, configured, _renumbering(renumber))
    plan = _with_database(settings, lambda conn: apply(conn, parsed, dry_run=dry_run))
    for note in plan.skipped:
        click.echo(note)
    if plan.problems:
        for problem in plan.problems[:MAX_SHOWN]:
            click.echo(str(problem), err=True)
        more = len(plan.problems) - MAX_SHOWN
        if more > 0:
            click.echo(f"... and {more} more", err=True)
        raise CliError(f"{len(plan.problems)} problem(s); nothing was written")
    prefix = "would import" if dry_run else "imported" if plan.written else "nothing to do"
    click.echo(f"{prefix}: {plan.summary()}")


@keys.command("export")
@config_option
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv")
def export_keys(config_path: Path, directory: Path, fmt: str) -> None:
    """Write the registry to DIRECTORY as SuperOffice table exports (what import reads)."""
    from engine.keyregistry import exports
    from engine.keyregistry.plan import registry_tables

    settings = settings_from(config_path)
    names = {c.id: c.name for c in settings.connections}
    tables = _with_database(settings, lambda conn: registry_tables(conn, names))
    directory.mkdir(parents=True, exist_ok=True)
    for table, rows in tables.items():
        path = exports.write(directory, table, rows, fmt)
        click.echo(f"{path}: {len(rows)} rows")
