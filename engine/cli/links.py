"""``erpsync links show|compare|create|connect|break``: a CRM record's links, through the API.

Over the ErpSync agent's link endpoints (GetConnectionsAndDisplayFields, CreateActorLink,
ConnectActor, BreakActorLink) and read-through endpoints (GetFieldValuesFromCrm,
GetFieldValuesFromErp), so the API's rules hold: a record links to one actor per connection,
an actor to one record, and the caller's connection allow-list applies.
"""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from engine.cli.client import api_from, api_options, run
from engine.cli.common import CliError
from engine.cli.output import console, echo_json

AGENT = "/api/v1/Agents/ErpSync"
CRM_TYPES = ["Contact", "Person", "Project", "Sale"]
ERP_TYPES = ["Customer", "Supplier", "Partner", "Person", "Project", "Employee", "Sale"]

_crm_type = click.option(
    "--type",
    "crm_type",
    type=click.Choice(CRM_TYPES),
    default="Contact",
    show_default=True,
    help="The CRM record's type.",
)
_erp_type = click.option(
    "--erp-type",
    type=click.Choice(ERP_TYPES),
    default="Customer",
    show_default=True,
    help="The ERP actor's type.",
)


@click.group("links")
def links() -> None:
    """A CRM record's links to ERP actors: show, compare, create, connect, break."""


def _call(kw: dict[str, Any], name: str, body: dict[str, Any]) -> tuple[bool, Any]:
    as_json = kw.pop("as_json")
    api = api_from(kw)
    return as_json, run(api, lambda: api.json("POST", f"{AGENT}/{name}", json=body))


@links.command("show")
@click.argument("record_id", type=click.IntRange(1, 2**31 - 1))
@_crm_type
@api_options
def links_show(record_id: int, crm_type: str, **kw: Any) -> None:
    """The record's link on each connection, with the linked actor's mapped fields."""
    as_json, rows = _call(
        kw, "GetConnectionsAndDisplayFields", {"CrmActorType": crm_type, "EntityId": record_id}
    )
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo(f"no connection maps {crm_type}")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("connection", "linked", "actor", "fields"):
        table.add_column(column, overflow="fold")
    for row in rows:
        broken = row.get("LinkBroken")
        if row["Connected"]:
            linked, actor = "yes", f"{row['ErpActorType']} {row['ErpKey']}"
        elif broken:
            linked = f"broken by {broken['BrokenBy']} at {broken['BrokenAt'][:19]}"
            actor = f"({broken['ErpActorType']} {broken['ErpKey']})"
        else:
            linked, actor = "no", ""
        fields = ", ".join(
            f"{f['FieldKey']}={f['Value']!r}" for f in row["ErpFields"] if row["Connected"]
        )
        if row.get("ReadError"):
            fields = f"(not read: {row['ReadError']})"
        table.add_row(f"{row['ErpConnectionId']} {row['ConnectionName']}", linked, actor, fields)
    console().print(table)


_FLOWS = {(True, True): "<->", (False, True): "->", (True, False): "<-", (False, False): ""}


@links.command("compare")
@click.argument("connection", type=click.IntRange(1, 2**31 - 1))
@click.argument("record_id", type=click.IntRange(1, 2**31 - 1))
@click.option(
    "--erp-key",
    help="Compare with this actor instead of the linked one (before `links connect`).",
)
@_crm_type
@_erp_type
@api_options
def links_compare(
    connection: int,
    record_id: int,
    erp_key: str | None,
    crm_type: str,
    erp_type: str,
    **kw: Any,
) -> None:
    """The record's CRM values beside the ERP actor's, per field CONNECTION maps, read live
    (GetFieldValuesFromCrm, GetFieldValuesFromErp). ``->``: flows CRM to ERP; ``<-``: ERP to
    CRM; ``*``: the values differ."""
    as_json = kw.pop("as_json")
    api = api_from(kw)

    async def read() -> tuple[str, str, Any, Any]:
        actor_type, key = erp_type, erp_key
        if key is None:
            shown = await api.json(
                "POST",
                f"{AGENT}/GetConnectionsAndDisplayFields",
                json={"CrmActorType": crm_type, "EntityId": record_id},
            )
            row = next((r for r in shown if r["ErpConnectionId"] == connection), None)
            if row is None or not row["Connected"]:
                raise CliError(
                    f"{crm_type} {record_id} is not linked on connection {connection}",
                    hint="give --erp-key to compare with an actor there",
                )
            actor_type, key = row["ErpActorType"], row["ErpKey"]
        crm = await api.json(
            "POST",
            f"{AGENT}/GetFieldValuesFromCrm",
            json={"RecordId": record_id, "ActorTypeCrm": crm_type},
        )
        erp = await api.json(
            "POST",
            f"{AGENT}/GetFieldValuesFromErp",
            json={"ErpConnectionId": connection, "ActorTypeErp": actor_type, "ErpKey": key},
        )
        return actor_type, key, crm, erp

    actor_type, key, crm, erp = run(api, read)
    if as_json:
        echo_json({"ErpActorType": actor_type, "ErpKey": key, "Crm": crm, "Erp": erp})
        return
    crm_values = {v["CrmFieldKey"]: v["Value"] for v in crm}
    table = Table(box=None, pad_edge=False, title=f"{crm_type} {record_id} / {actor_type} {key}")
    for column in ("crm field", "crm", "flow", "erp", "erp field", ""):
        table.add_column(column, overflow="fold")
    for value in erp:
        mine = crm_values.get(value["CrmFieldKey"])
        table.add_row(
            value["CrmFieldKey"],
            repr(mine),
            _FLOWS[(bool(value["SyncToCrm"]), bool(value["SyncToErp"]))],
            repr(value["Value"]),
            value.get("ErpFieldKey") or value["DisplayName"],
            "*" if mine != value["Value"] else "",
        )
    console().print(table)


def _link_body(
    connection: int, record_id: int, erp_key: str, crm_type: str, erp_type: str
) -> dict[str, Any]:
    return {
        "ErpConnectionId": connection,
        "CrmRecordId": record_id,
        "CrmActorType": crm_type,
        "ErpKey": erp_key,
        "ErpActorType": erp_type,
    }


@links.command("create")
@click.argument("connection", type=click.IntRange(1, 2**31 - 1))
@click.argument("record_id", type=click.IntRange(1, 2**31 - 1))
@click.argument("erp_key")
@_crm_type
@_erp_type
@api_options
def links_create(
    connection: int, record_id: int, erp_key: str, crm_type: str, erp_type: str, **kw: Any
) -> None:
    """Link the record to the ERP actor ERP_KEY on CONNECTION (CreateActorLink).

    Refused (exit 1, the API's message) when the record has another actor there or the actor
    another record.
    """
    body = _link_body(connection, record_id, erp_key, crm_type, erp_type)
    as_json, linked = _call(kw, "CreateActorLink", body)
    if as_json:
        echo_json(linked)
    else:
        click.echo(f"{crm_type} {record_id} is linked to {erp_type} {erp_key!r} on {connection}")


@links.command("connect")
@click.argument("connection", type=click.IntRange(1, 2**31 - 1))
@click.argument("record_id", type=click.IntRange(1, 2**31 - 1))
@click.argument("erp_key")
@_crm_type
@_erp_type
@api_options
def links_connect(
    connection: int, record_id: int, erp_key: str, crm_type: str, erp_type: str, **kw: Any
) -> None:
    """Link like ``create``, through ConnectActor (also after a break)."""
    body = _link_body(connection, record_id, erp_key, crm_type, erp_type)
    as_json, _ = _call(kw, "ConnectActor", {**body, "FieldValues": []})
    if as_json:
        echo_json(True)
    else:
        click.echo(f"{crm_type} {record_id} is linked to {erp_type} {erp_key!r} on {connection}")


@links.command("break")
@click.argument("connection", type=click.IntRange(1, 2**31 - 1))
@click.argument("record_id", type=click.IntRange(1, 2**31 - 1))
@_crm_type
@api_options
def links_break(connection: int, record_id: int, crm_type: str, **kw: Any) -> None:
    """Break the record's link on CONNECTION (BreakActorLink).

    The record then stays out of that connection's resyncs, "resync all" included, until it
    is linked again (``create`` or ``connect``).
    """
    body = {"ErpConnectionId": connection, "CrmRecordId": record_id, "CrmActorType": crm_type}
    as_json, broken = _call(kw, "BreakActorLink", body)
    if as_json:
        echo_json(broken)
    elif broken:
        click.echo(f"broke the link of {crm_type} {record_id} on connection {connection}")
    else:
        click.echo(f"{crm_type} {record_id} had no link on connection {connection}")
