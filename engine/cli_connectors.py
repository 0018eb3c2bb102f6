"""``erpsync connectors``: list the installed connectors and check a configured connection."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import click

T = TypeVar("T")

EXIT_FAILED = 1
EXIT_CONFIG = 2


class _Failure(click.ClickException):
    """One line on stderr, no traceback, a chosen exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it per instance

    def show(self, file: Any = None) -> None:
        click.echo(f"erpsync: {self.format_message()}", err=True)


@click.group()
def connectors() -> None:
    """Installed connectors and configured connections."""


@connectors.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_connectors(as_json: bool) -> None:
    """List the connectors found through the erpsync.connectors entry points.

    A connector that fails to import is listed with its error; the others still work.
    """
    from connectors.registry import discover

    found = discover()
    if as_json:
        rows = [
            {
                "name": info.name,
                "reference": info.reference,
                "distribution": info.distribution,
                "version": info.version,
                "capabilities": sorted(info.capabilities),
                "error": info.error,
            }
            for info in found
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    table = [("NAME", "DISTRIBUTION", "VERSION", "CAPABILITIES")]
    for info in found:
        caps = ", ".join(sorted(info.capabilities)) or "-"
        table.append(
            (
                info.name,
                info.distribution or "?",
                info.version or "?",
                caps if info.ok else f"BROKEN: {info.error}",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        click.echo(
            "".join(cell.ljust(w + 2) for cell, w in zip(row, widths, strict=False)) + row[3]
        )


@connectors.command("check")
@click.argument("connection_id", type=int)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=lambda: os.environ.get("ERPSYNC_CONFIG", "config/erpsync.toml"),
    show_default="$ERPSYNC_CONFIG or config/erpsync.toml",
    help="TOML configuration file.",
)
def check(connection_id: int, config_path: Path) -> None:
    """Validate a connection's settings, open it, test it, and show its actor types and fields.

    CONNECTION_ID is 0 for the CRM or an ERP connection's id. Exits non-zero on any failure.
    """
    from engine.settings import ConfigError, load_settings

    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        raise _Failure(f"invalid configuration\n{exc}", EXIT_CONFIG) from None
    conn = settings.connection(connection_id)
    if conn is None:
        ids = ", ".join(str(c.id) for c in settings.all_connections)
        raise _Failure(f"no connection {connection_id} in {config_path} (ids: {ids})", EXIT_CONFIG)
    database_url = settings.database.url.get_secret_value()
    asyncio.run(_check(conn, database_url))


async def _check(conn: Any, database_url: str) -> None:
    from connectors.contract import (
        ActorTypesInput,
        ConnectorContext,
        ConnectorError,
        FieldsInput,
        TestConnectionInput,
        capabilities,
    )
    from connectors.registry import ConnectorLoadError, load

    label = f"connection {conn.id} ({conn.name})"
    try:
        cls = load(conn.connector)
    except ConnectorLoadError as exc:
        raise _Failure(f"{label}: {exc}", EXIT_CONFIG) from None
    config = cls.config_model.model_validate(conn.settings)
    caps = ", ".join(sorted(capabilities(cls))) or "none"
    click.echo(f"{label}: connector {conn.connector!r}, settings valid; capabilities: {caps}")
    context = ConnectorContext(
        connection_id=conn.id, connection_name=conn.name, service_database_url=database_url
    )
    connector = cls(config, context)

    async def step(what: str, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(conn.timeout):
                return await call
        except TimeoutError:
            raise _Failure(f"{label}: {what} timed out after {conn.timeout:g}s") from None
        except ConnectorError as exc:
            raise _Failure(f"{label}: {what} failed ({exc.kind}): {exc.message}") from None
        except Exception as exc:
            raise _Failure(
                f"{label}: {what} raised {type(exc).__name__}: {exc} (a connector bug)"
            ) from None

    try:
        await step("open", connector.open())
        result = await step("test connection", connector.test_connection(TestConnectionInput()))
        if not result.ok:
            raise _Failure(f"{label}: test connection failed: {result.message}")
        click.echo(f"test connection: ok{f' ({result.message})' if result.message else ''}")
        types = await step(
            "supported actor types", connector.supported_actor_types(ActorTypesInput())
        )
        click.echo(f"actor types: {', '.join(types.actor_types) or 'none'}")
        known: dict[str, set[str]] = {}
        for actor_type in types.actor_types:
            fields = await step(
                f"fields of {actor_type}", connector.fields(FieldsInput(actor_type))
            )
            known[actor_type] = {f.key for f in fields.fields}
            mapped = conn.mapping_for(actor_type)
            suffix = f" (mapped to CRM {mapped.crm})" if mapped else ""
            click.echo(f"  {actor_type}{suffix}:")
            for f in fields.fields:
                details = [str(f.type)]
                if f.max_length:
                    details.append(f"max {f.max_length}")
                if str(f.access) != "Normal":
                    details.append(str(f.access))
                if mapped and f.key in mapped.fields:
                    details.append(
                        f"<-> {mapped.fields[f.key].crm} ({mapped.fields[f.key].direction})"
                    )
                click.echo(f"    {f.key:<24} {', '.join(details)}")
        missing = [
            f"{m.erp}.{key}"
            for m in conn.actor_types
            if m.erp in known
            for key in m.fields
            if key not in known[m.erp]
        ]
        unsupported = [str(m.erp) for m in conn.actor_types if m.erp not in known]
        if unsupported or missing:
            problems = [f"actor type {t} is mapped but not supported" for t in unsupported]
            problems += [f"field {f} is mapped but unknown to the connector" for f in missing]
            raise _Failure(f"{label}: {'; '.join(problems)}")
        click.echo(f"{label}: ok")
    finally:
        try:
            await connector.aclose()
        except Exception as exc:  # a failing close must not hide the real result
            click.echo(f"{label}: close failed: {type(exc).__name__}", err=True)
