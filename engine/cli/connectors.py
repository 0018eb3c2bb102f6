"""``erpsync connectors``: list the installed connectors and check a configured connection;
list the configured connections with their Active state, and activate or deactivate one
(through the API: GetAllConnections, ToggleErpConnectionActive)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import click

from engine.cli.client import api_from, api_options, run
from engine.cli.common import EXIT_CONFIG, CliError, config_option, settings_from
from engine.cli.output import echo_json
from engine.settings import ConnectionSettings

T = TypeVar("T")

# How a mapped field flows, seen from the ERP field: to_erp is CRM -> ERP.
ARROWS = {"to_erp": "<-", "to_crm": "->", "both": "<->", "none": "-- not synced:"}
ERPSYNC = "/api/v1/Agents/ErpSync"


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
@config_option
def check(connection_id: int, config_path: Path) -> None:
    """Validate a connection's settings, open it, test it, and show its actor types and fields.

    CONNECTION_ID is 0 for the CRM or an ERP connection's id. Exits non-zero on any failure.
    """
    settings = settings_from(config_path)
    conn = settings.connection(connection_id)
    if conn is None:
        ids = ", ".join(str(c.id) for c in settings.all_connections)
        raise CliError(f"no connection {connection_id} in {config_path} (ids: {ids})", EXIT_CONFIG)
    database_url = settings.database.url.get_secret_value()
    asyncio.run(_check(conn, database_url))


async def _check(conn: ConnectionSettings, database_url: str) -> None:
    from connectors.contract import (
        ActorTypesInput,
        ConnectorError,
        FieldsInput,
        TestConnectionInput,
        capabilities,
    )
    from connectors.registry import ConnectorLoadError
    from engine.sync.connections import build_connector

    label = f"connection {conn.id} ({conn.name})"
    try:
        connector = build_connector(conn, database_url)
    except ConnectorLoadError as exc:
        raise CliError(f"{label}: {exc}", EXIT_CONFIG) from None
    caps = ", ".join(sorted(capabilities(type(connector)))) or "none"
    click.echo(f"{label}: connector {conn.connector!r}, settings valid; capabilities: {caps}")

    async def step(what: str, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(conn.timeout):
                return await call
        except TimeoutError:
            raise CliError(f"{label}: {what} timed out after {conn.timeout:g}s") from None
        except ConnectorError as exc:
            raise CliError(f"{label}: {what} failed ({exc.kind}): {exc.message}") from None
        except Exception as exc:
            raise CliError(
                f"{label}: {what} raised {type(exc).__name__}: {exc} (a connector bug)"
            ) from None

    try:
        await step("open", connector.open())
        result = await step("test connection", connector.test_connection(TestConnectionInput()))
        if not result.ok:
            raise CliError(f"{label}: test connection failed: {result.message}")
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
                    m = mapped.fields[f.key]
                    details.append(f"{ARROWS[m.direction]} CRM {m.crm} ({m.direction})")
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
            raise CliError(f"{label}: {'; '.join(problems)}")
        click.echo(f"{label}: ok")
    finally:
        try:
            await connector.aclose()
        except Exception as exc:  # a failing close must not hide the real result
            click.echo(f"{label}: close failed: {type(exc).__name__}", err=True)


@connectors.command("connections")
@api_options
def connections(**kw: Any) -> None:
    """List the configured ERP connections you may touch, with their Active state
    (GetAllConnections). An inactive connection is not synced: see `activate`."""
    as_json = kw.pop("as_json")
    api = api_from(kw)
    rows = run(api, lambda: api.json("POST", f"{ERPSYNC}/GetAllConnections", json={}))
    if as_json:
        echo_json(rows)
        return
    table = [("ID", "NAME", "CONNECTOR", "ACTIVE", "MOST RECENT")]
    for c in rows:
        table.append(
            (
                str(c["ErpConnectionId"]),
                c["DisplayName"],
                c.get("Connector") or "?",
                "yes" if c["Active"] else "NO",
                c.get("MostRecentTimestamp") or "-",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        click.echo(
            "".join(cell.ljust(w + 2) for cell, w in zip(row, widths, strict=False)) + row[4]
        )


def _set_active(connection_id: int, active: bool, kw: dict[str, Any]) -> None:
    as_json = kw.pop("as_json")
    api = api_from(kw)
    body = {"ErpConnectionId": connection_id, "Active": active}

    async def call() -> tuple[list[str], str]:
        reply = await api.request("POST", f"{ERPSYNC}/ToggleErpConnectionActive", json=body)
        if reply.status >= 400:
            raise api.error(reply.status, reply.body)
        return json.loads(reply.body), reply.headers.get("X-Connection-Active", "")

    reasons, state = run(api, call)
    if reasons:
        raise CliError(f"connection {connection_id}: not changed: {'; '.join(reasons)}")
    if as_json:
        echo_json({"ErpConnectionId": connection_id, "Active": state == "true"})
        return
    if state == "true":
        click.echo(f"connection {connection_id} is active: the sync runs it again")
    else:
        click.echo(
            f"connection {connection_id} is inactive: the continuous sync, SyncAll and resyncs "
            "leave it out until it is activated"
        )


@connectors.command("activate")
@click.argument("connection_id", type=int)
@api_options
def activate(connection_id: int, **kw: Any) -> None:
    """Make an ERP connection active again (ToggleErpConnectionActive, Active=true).
    Already active: nothing changes."""
    _set_active(connection_id, True, kw)


@connectors.command("deactivate")
@click.argument("connection_id", type=int)
@api_options
def deactivate(connection_id: int, **kw: Any) -> None:
    """Make an ERP connection inactive (ToggleErpConnectionActive, Active=false): the
    continuous sync, SyncAll/ForceSyncAll and resyncs leave it out. Already inactive: nothing
    changes."""
    _set_active(connection_id, False, kw)
