"""``erpsync keys``: import and export the key registry as SuperOffice table exports.

The group is built by :func:`keys_group` from the command line's shared pieces (the
``--config`` option, the settings loader, the error type), so this module imports nothing from
the command line itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import click

from engine.keyregistry import exports
from engine.keyregistry.plan import apply, parse, registry_tables
from engine.settings import Settings, redact_url

MAX_SHOWN = 50


def _renumbering(pairs: tuple[str, ...]) -> dict[int, int]:
    mapping: dict[int, int] = {}
    for pair in pairs:
        left, sep, right = pair.partition("=")
        if not sep or not left.strip().isdigit() or not right.strip().isdigit():
            raise click.BadParameter(f"{pair!r}: expected SUPEROFFICE_ID=ERPSYNC_ID")
        mapping[int(left)] = int(right)
    return mapping


async def _connect(settings: Settings, failure: type[click.ClickException]) -> asyncpg.Connection:
    url = settings.database.url.get_secret_value()
    try:
        return await asyncpg.connect(url, timeout=settings.database.connect_timeout)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        message = f"PostgreSQL is not reachable at {redact_url(url)} ({type(exc).__name__})"
        raise failure(message) from None


def keys_group(
    config_option: Callable[[Callable[..., None]], Callable[..., None]],
    load_settings: Callable[[Path], Settings],
    failure: type[click.ClickException],
) -> click.Group:
    """The ``keys`` command group."""

    @click.group()
    def keys() -> None:
        """The internal/external key registry (SuperOffice ErpInternalKey/ErpExternalKey)."""

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
        settings = load_settings(config_path)
        try:
            files = exports.find(directory)
            tables = {table: exports.read(table, path) for table, path in files.items()}
        except exports.ExportError as exc:
            raise failure(str(exc)) from None
        configured = [c.id for c in settings.connections]
        parsed = parse(tables, configured, _renumbering(renumber))

        async def run() -> Any:
            conn = await _connect(settings, failure)
            try:
                return await apply(conn, parsed, dry_run=dry_run)
            finally:
                await conn.close()

        plan = asyncio.run(run())
        for note in plan.skipped:
            click.echo(note)
        if plan.problems:
            for problem in plan.problems[:MAX_SHOWN]:
                click.echo(str(problem), err=True)
            more = len(plan.problems) - MAX_SHOWN
            if more > 0:
                click.echo(f"... and {more} more", err=True)
            raise failure(f"{len(plan.problems)} problem(s); nothing was written")
        prefix = "would import" if dry_run else "imported" if plan.written else "nothing to do"
        click.echo(f"{prefix}: {plan.summary()}")

    @keys.command("export")
    @config_option
    @click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
    @click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv")
    def export_keys(config_path: Path, directory: Path, fmt: str) -> None:
        """Write the registry to DIRECTORY as SuperOffice table exports (what import reads)."""
        settings = load_settings(config_path)
        names = {c.id: c.name for c in settings.connections}

        async def run() -> dict[str, list[dict[str, object]]]:
            conn = await _connect(settings, failure)
            try:
                return await registry_tables(conn, names)
            finally:
                await conn.close()

        tables = asyncio.run(run())
        directory.mkdir(parents=True, exist_ok=True)
        for table, rows in tables.items():
            path = exports.write(directory, table, rows, fmt)
            click.echo(f"{path}: {len(rows)} rows")

    return keys
