"""``erpsync synclog``: the field values the engine changed, through the API."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table
from rich.text import Text

from engine.cli.client import DASHBOARD, api_from, api_options, run
from engine.cli.output import console, echo_json, when


@click.command("synclog")
@click.option("--task", "task_id", type=int, help="Only changes made by this task.")
@click.option("--key", "key_id", type=int, help="Only changes of this internal key.")
@click.option("--connection", "connection_id", type=int, help="Only changes on this connection.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--before", "before_id", type=int, help="Only changes older than this log id.")
@api_options
def synclog(
    task_id: int | None,
    key_id: int | None,
    connection_id: int | None,
    limit: int,
    before_id: int | None,
    **kw: Any,
) -> None:
    """Field values the engine changed (old -> new), newest first.

    Page back with --before ID: the id of the oldest change shown (the last line says it).
    """
    as_json = kw.pop("as_json")
    api = api_from(kw)
    # One row more than shown tells whether there are more (the API gives at most 1000).
    query = {"limit": str(min(limit + 1, 1000))}
    filters = (
        ("task", task_id),
        ("key", key_id),
        ("connection", connection_id),
        ("before", before_id),
    )
    for name, value in filters:
        if value is not None:
            query[name] = str(value)
    fetched: list[Any] = run(api, lambda: api.json("GET", f"{DASHBOARD}/synclog", params=query))
    rows = fetched[:limit]
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no field changes")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("id", "when", "task", "key", "connection", "field", "change"):
        table.add_column(column, justify="right" if column in ("id", "task", "key") else "left")
    for r in rows:
        target = "CRM" if r["Direction"] == "to_crm" else "ERP"
        field = f"{r['ErpActorType']}.{r['ErpField']} ({r['CrmField']}) -> {target}"
        change = Text.assemble(
            (str(r["OldValue"]) if r["OldValue"] is not None else "(empty)", "dim"),
            " -> ",
            (str(r["NewValue"]) if r["NewValue"] is not None else "(empty)", "bold"),
        )
        table.add_row(
            str(r["Id"]),
            when(r["At"]),
            str(r["TaskId"] or ""),
            str(r["InternalKeyId"]),
            f"{r['ConnectionId']} {r['ConnectionName']}",
            field,
            change,
        )
    console().print(table)
    oldest = rows[-1]["Id"]
    if len(fetched) > limit:
        click.echo(f"\n{len(rows)} shown, there are more: add --before {oldest} for older ones")
    elif len(fetched) == limit == 1000:  # the API gives no more than 1000: cannot tell
        click.echo(f"\n{len(rows)} shown, there may be more: add --before {oldest} for older ones")
