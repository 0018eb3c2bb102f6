"""``erpsync synclog``: the field values the engine changed, through the API."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table
from rich.text import Text

from engine.cli.client import DASHBOARD, api_options, get_listing
from engine.cli.output import console, when


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

    Page back with --before (the Id of the oldest change shown; see --json).
    """
    query = {"limit": str(limit)}
    filters = (
        ("task", task_id),
        ("key", key_id),
        ("connection", connection_id),
        ("before", before_id),
    )
    for name, value in filters:
        if value is not None:
            query[name] = str(value)
    rows = get_listing(kw, f"{DASHBOARD}/synclog", query, "no field changes")
    if not rows:
        return
    table = Table(box=None, pad_edge=False)
    for column in ("when", "task", "key", "connection", "field", "change"):
        table.add_column(column, justify="right" if column in ("task", "key") else "left")
    for r in rows:
        target = "CRM" if r["Direction"] == "to_crm" else "ERP"
        field = f"{r['ErpActorType']}.{r['ErpField']} ({r['CrmField']}) -> {target}"
        change = Text.assemble(
            (str(r["OldValue"]) if r["OldValue"] is not None else "(empty)", "dim"),
            " -> ",
            (str(r["NewValue"]) if r["NewValue"] is not None else "(empty)", "bold"),
        )
        table.add_row(
            when(r["At"]),
            str(r["TaskId"] or ""),
            str(r["InternalKeyId"]),
            f"{r['ConnectionId']} {r['ConnectionName']}",
            field,
            change,
        )
    console().print(table)
